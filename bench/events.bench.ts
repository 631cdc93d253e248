/**
 * events benchmark, on the embedded bus (SQLite log + in-process fan-out) and on NATS
 * JetStream (when ALTO_TEST_NATS_URL is set), in one run:
 * - the event store on its own: publishes per second, one at a time and with `concurrency` in
 *   flight; publish-to-consume latency (p50/p99) for a consumer without a group and for a group
 *   member with manual acks, one event in flight at a time;
 * - Alto through the edge: event/Publish over HTTP per second, and HTTP publish to websocket
 *   delivery latency (p50/p99).
 *
 * Run: node --import tsx bench/events.bench.ts [publishes=20000] [concurrency=32] [samples=2000]
 * (`. scripts/test-services.sh` first for the NATS rows.)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import WebSocket from 'ws';
import { startAlto } from '../packages/alto/src/edge/server.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';
import { NatsEventStore } from '../packages/alto/src/store/events/nats.js';
import type { EventStore } from '../packages/alto/src/store/events/port.js';
import { SqliteEventStore } from '../packages/alto/src/store/events/sqlite.js';
import { openSqlite } from '../packages/alto/src/store/sqlite/database.js';

const publishes = Number(process.argv[2] ?? 20_000);
const concurrency = Number(process.argv[3] ?? 32);
const samples = Number(process.argv[4] ?? 2000);
const natsUrl = process.env.ALTO_TEST_NATS_URL;
const message = { type: 'order.created', order: 'ord_123', amount: 4200, note: 'x'.repeat(100) };

type Row = Record<string, string | number>;

async function perSecond(total: number, inFlight: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await task(next++);
    }),
  );
  return Math.round(total / ((performance.now() - started) / 1000));
}

function percentile(sorted: number[], p: number): string {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))].toFixed(2);
}

/**
 * Publishes one event at a time and waits for its delivery before the next: the time from
 * the publish call to the consumer holding the event, in milliseconds.
 */
async function latencies(publish: (n: number) => Promise<unknown>, delivered: () => number): Promise<{ p50: string; p99: string }> {
  const times: number[] = [];
  for (let n = 0; n < samples; n++) {
    const before = delivered();
    const started = performance.now();
    await publish(n);
    while (delivered() === before) await new Promise((resolve) => setImmediate(resolve));
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function storeRow(backend: string, store: EventStore): Promise<Row> {
  const ns = `bench-${randomBytes(4).toString('hex')}/dev`;
  const sequential = await perSecond(Math.min(publishes, 5000), 1, () => store.publish(ns, 'seq', message));
  const parallel = await perSecond(publishes, concurrency, () => store.publish(ns, 'par', message));

  let solo = 0;
  const soloConsumer = await store.consume(ns, 'solo', { autoAck: true, ackWaitMs: 30_000, maxInFlight: 100 });
  const soloRun = (async () => {
    for await (const _delivery of soloConsumer) solo++;
  })();
  const soloLatency = await latencies(() => store.publish(ns, 'solo', message), () => solo);
  await soloConsumer.close();
  await soloRun;

  let acked = 0;
  const member = await store.consume(ns, 'group', { group: 'bench', autoAck: false, ackWaitMs: 30_000, maxInFlight: 100 });
  const memberRun = (async () => {
    for await (const delivery of member) {
      acked++;
      void store.ack(ns, 'group', 'bench', delivery.id);
    }
  })();
  const groupLatency = await latencies(() => store.publish(ns, 'group', message), () => acked);
  await member.close();
  await memberRun;
  await store.deleteProject(ns.split('/')[0]);
  return {
    where: `store (${backend})`,
    'publish/s, 1 in flight': sequential,
    [`publish/s, ${concurrency} in flight`]: parallel,
    'latency p50 ms': soloLatency.p50,
    'latency p99 ms': soloLatency.p99,
    'group+ack p50 ms': groupLatency.p50,
    'group+ack p99 ms': groupLatency.p99,
  };
}

/** JetStream streams now, so the ones a benchmark row creates can be deleted after it. */
async function streamNames(url: string): Promise<{ names: Set<string>; removeOthers(): Promise<void> }> {
  const connection = await connect({ servers: url });
  const jsm = await connection.jetstreamManager();
  const names = new Set<string>();
  for await (const name of jsm.streams.names()) names.add(name);
  return {
    names,
    async removeOthers() {
      for await (const name of jsm.streams.names()) if (!names.has(name)) await jsm.streams.delete(name);
      await connection.drain();
    },
  };
}

async function httpRow(backend: string, options: { natsUrl?: string }): Promise<Row> {
  const existing = options.natsUrl ? await streamNames(options.natsUrl) : undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'alto-bench-'));
  const alto = await startAlto({ port: 0, host: '127.0.0.1', dataDir, logger: silentLogger(), natsUrl: options.natsUrl });
  try {
    const key = readFileSync(alto.adminKeyPath, 'utf8').trim();
    const publish = async (topic: string) => {
      const response = await fetch(`${alto.url}/v1/event/Publish`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ topic, message }),
      });
      if (response.status !== 200) throw new Error(`Publish: ${response.status} ${await response.text()}`);
      await response.arrayBuffer();
    };
    const count = Math.min(publishes, 10_000);
    const rate = await perSecond(count, concurrency, () => publish('http'));

    let delivered = 0;
    const ws = new WebSocket(`${alto.url.replace('http', 'ws')}/v1/event/Consume`, { headers: { authorization: `Bearer ${key}` } });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.on('message', () => delivered++);
    // The consumer starts at the first event stored from now on; wait for a marker to be sure it is in place.
    ws.send(JSON.stringify({ topic: 'latency', offset: new Date().toISOString() }));
    await publish('latency');
    while (delivered === 0) await new Promise((resolve) => setImmediate(resolve));
    const latency = await latencies(() => publish('latency'), () => delivered);
    ws.close();
    return {
      where: `HTTP + websocket (${backend})`,
      [`publish/s, ${concurrency} in flight`]: rate,
      'latency p50 ms': latency.p50,
      'latency p99 ms': latency.p99,
    };
  } finally {
    await alto.close();
    rmSync(dataDir, { recursive: true, force: true });
    await existing?.removeOthers();
  }
}

const rows: Row[] = [];
const dir = mkdtempSync(join(tmpdir(), 'alto-bench-'));
const db = openSqlite(join(dir, 'alto.db'));
rows.push(await storeRow('sqlite', new SqliteEventStore(db)));
db.close();
rmSync(dir, { recursive: true, force: true });
let nc: NatsConnection | undefined;
if (natsUrl) {
  nc = await connect({ servers: natsUrl });
  rows.push(await storeRow('nats', await NatsEventStore.open(nc)));
  await nc.drain();
}
rows.push(await httpRow('sqlite', {}));
if (natsUrl) rows.push(await httpRow('nats', { natsUrl }));
else console.log('ALTO_TEST_NATS_URL is not set: no NATS rows');
console.log(`events: ${publishes} publishes per store row (5000 one at a time), ${samples} latency samples, ~180-byte messages`);
console.table(rows);
