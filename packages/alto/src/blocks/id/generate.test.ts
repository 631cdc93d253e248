import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ID_TYPES, IdGenerator } from './generate.js';

const FORMATS: Record<(typeof ID_TYPES)[number], RegExp> = {
  uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  uuidv7: /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  ulid: /^[0-9A-HJKMNP-TV-Z]{26}$/,
  ksuid: /^[0-9A-Za-z]{27}$/,
  nanoid: /^[A-Za-z0-9_-]{21}$/,
  shortid: /^[A-Za-z0-9_-]{11}$/,
  snowflake: /^\d{15,19}$/,
  bigflake: /^\d{30,39}$/,
};

test('every id type has its format and 5000 of each are distinct', () => {
  const generator = new IdGenerator();
  for (const type of ID_TYPES) {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const id = generator.generate(type);
      assert.match(id, FORMATS[type], `${type}: ${id}`);
      seen.add(id);
    }
    assert.equal(seen.size, 5000, `${type} repeated an id`);
  }
});

test('time-ordered ids increase strictly, within one millisecond and when the clock steps back', () => {
  let now = 1_700_000_000_000;
  const generator = new IdGenerator(5n, 7n, () => now);
  for (const type of ['snowflake', 'bigflake'] as const) {
    let previous = -1n;
    for (let i = 0; i < 10_000; i++) {
      if (i === 5000) now -= 10; // clock steps back
      const id = BigInt(generator.generate(type));
      assert.ok(id > previous, `${type} went backwards at ${i}`);
      previous = id;
    }
  }
  let previousUlid = '';
  for (let i = 0; i < 10_000; i++) {
    if (i === 5000) now -= 10;
    const id = generator.ulid();
    assert.ok(id > previousUlid, `ulid went backwards at ${i}`);
    previousUlid = id;
  }
});

test('snowflake carries its time and worker', () => {
  const at = Date.UTC(2026, 0, 1);
  const id = BigInt(new IdGenerator(513n, 1n, () => at).snowflake());
  assert.equal(id >> 22n, BigInt(at) - 1577836800000n);
  assert.equal((id >> 12n) & 0x3ffn, 513n);
});

test('uuidv7 and ksuid embed the current time', () => {
  const at = Date.UTC(2026, 5, 1, 12, 0, 0);
  const generator = new IdGenerator(1n, 1n, () => at);
  const uuid = generator.uuidv7();
  assert.equal(parseInt(uuid.replace(/-/g, '').slice(0, 12), 16), at);
  const ksuid = generator.ksuid();
  let value = 0n;
  for (const char of ksuid) value = value * 62n + BigInt('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'.indexOf(char));
  assert.equal(Number(value >> 128n) + 1400000000, at / 1000);
});
