import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { z } from 'zod';
import { silentLogger } from '../kit/logger.js';
import { DEFAULT_GB_SECOND_MICROS, defaultPriceFile, formatMicros, PriceList } from './prices.js';
import { defineService, endpoint } from './service.js';

const plain = { description: 'x', request: z.object({}), response: z.object({}), example: {}, handler: () => ({}) };
const services = [
  defineService({
    name: 'mail',
    description: 'a service with a premium endpoint',
    priceMicros: 2,
    endpoints: { Send: endpoint({ ...plain, priceMicros: 1000 }), List: endpoint(plain) },
  }),
  defineService({ name: 'id', description: 'a plain service', priceMicros: 1, endpoints: { Generate: endpoint(plain) } }),
];

const dir = mkdtempSync(join(tmpdir(), 'alto-prices-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const freshPath = () => join(dir, `prices-${files++}.json`);

test('the defaults list every endpoint at its declared price, compute per GB-second, and a free tier with no limits', () => {
  const file = defaultPriceFile(services);
  assert.deepEqual(file.requests, { id: { Generate: 1 }, mail: { List: 2, Send: 1000 } });
  assert.deepEqual(file.compute, { gb_second_micros: DEFAULT_GB_SECOND_MICROS, request_micros: 0 });
  assert.equal(file.free_tier.monthly_credit_micros, 0);
  assert.ok(Object.values(file.free_tier.limits).every((value) => value === 0));
  assert.equal(file.free_tier.limits.rate_limit, 0);
});

test('first open writes the defaults; a later open keeps what the operator wrote', () => {
  const path = freshPath();
  const list = PriceList.open(path, services, silentLogger());
  assert.equal(list.requestPrice('mail', 'Send'), 1000);
  const written = JSON.parse(readFileSync(path, 'utf8'));
  assert.equal(written.requests.mail.Send, 1000);
  assert.match(written.about, /micro-units/);

  written.requests.mail.Send = 5000;
  writeFileSync(path, JSON.stringify(written));
  const reopened = PriceList.open(path, services, silentLogger());
  assert.equal(reopened.requestPrice('mail', 'Send'), 5000);
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).requests.mail.Send, 5000, 'the file is not rewritten');
});

test('endpoints the file leaves out cost their declared price; names it invents are ignored', () => {
  const path = freshPath();
  writeFileSync(path, JSON.stringify({ requests: { id: { Generate: 9 }, nope: { Nothing: 1 } } }));
  const list = PriceList.open(path, services, silentLogger());
  assert.equal(list.requestPrice('id', 'Generate'), 9);
  assert.equal(list.requestPrice('mail', 'Send'), 1000);
  assert.equal(list.requestPrice('nope', 'Nothing'), 0);
  assert.deepEqual(
    list.entries().map((entry) => `${entry.service}/${entry.endpoint}=${entry.priceMicros}`),
    ['id/Generate=9', 'mail/List=2', 'mail/Send=1000'],
  );
  assert.equal(list.compute.gb_second_micros, DEFAULT_GB_SECOND_MICROS, 'what the file leaves out keeps its default');
});

test('an invalid file is refused at start with the place of each problem: fractions, negatives, typos', () => {
  const cases: [unknown, RegExp][] = [
    [{ requests: { id: { Generate: 0.5 } } }, /requests\.id\.Generate: must be a whole number of micro-units/],
    [{ compute: { gb_second_micros: -1 } }, /compute\.gb_second_micros: must not be negative/],
    [{ compute: { gb_seconds_micros: 3 } }, /compute: Unrecognized key: "gb_seconds_micros"/],
    [{ free_tier: { limits: { rate_limits: 3 } } }, /free_tier\.limits: Unrecognized key: "rate_limits"/],
  ];
  for (const [content, message] of cases) {
    const path = freshPath();
    writeFileSync(path, JSON.stringify(content));
    assert.throws(() => PriceList.open(path, services, silentLogger()), message);
  }
  const path = freshPath();
  writeFileSync(path, '{ "requests": ');
  assert.throws(() => PriceList.open(path, services, silentLogger()), /is not valid JSON/);
});

test('reload applies an edit, and keeps the last good list when an edit is invalid', () => {
  const path = freshPath();
  const list = PriceList.open(path, services, silentLogger());
  const file = JSON.parse(readFileSync(path, 'utf8'));
  file.requests.id.Generate = 4;
  file.free_tier.monthly_credit_micros = 100;
  writeFileSync(path, JSON.stringify(file));
  list.reload();
  assert.equal(list.requestPrice('id', 'Generate'), 4);
  assert.equal(list.freeTier.monthly_credit_micros, 100);

  writeFileSync(path, JSON.stringify({ requests: { id: { Generate: 1.5 } } }));
  list.reload();
  assert.equal(list.requestPrice('id', 'Generate'), 4, 'a bad edit changes nothing');

  file.requests.id.Generate = 6;
  writeFileSync(path, JSON.stringify(file));
  list.reload();
  assert.equal(list.requestPrice('id', 'Generate'), 6, 'the fixed edit applies');
});

test('compute is priced per GB-second of running time plus requests, in whole micro-units', () => {
  const path = freshPath();
  writeFileSync(path, JSON.stringify({ compute: { gb_second_micros: 17, request_micros: 2 } }));
  const list = PriceList.open(path, services, silentLogger());
  assert.equal(list.computePrice(1000, 1024, 0), 17, 'one GB-second');
  assert.equal(list.computePrice(60_000, 256, 10), 255 + 20, 'a minute at 256 MiB is 15 GB-seconds, plus 10 requests');
  assert.equal(list.computePrice(0, 1024, 3), 6, 'suspended (no running time): only the requests');
  assert.ok(Number.isInteger(list.computePrice(7, 333, 0)));
});

test('formatMicros writes exact decimals', () => {
  assert.equal(formatMicros(0), '0.000000');
  assert.equal(formatMicros(1), '0.000001');
  assert.equal(formatMicros(1_234_567), '1.234567');
  assert.equal(formatMicros(-5), '-0.000005');
  assert.equal(formatMicros(9_007_199_254_740_991), '9007199254.740991');
});
