/**
 * App and function log capture stays linear and bounded whatever a tenant writes: 24 MB without
 * a newline becomes one line cut at 16 KiB (with a marker) and the capture goes on with the next
 * line; a chunk of many lines is split in one pass; an instance's and an app's kept log are
 * bounded in bytes (4 MiB), and one read of an app's log (app/Logs, function/Logs) answers at
 * most 1 MiB. Neighbours: CRLF endings, a line split across chunks, a multi-byte character cut
 * in half, an exactly full line.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { AppRuntime, MAX_LOG_ANSWER_BYTES, type ExchangeMeter, type RuntimeScheduler } from '../../src/compute/apps/runtime.js';
import type { AppRecord } from '../../src/compute/apps/records.js';
import { BoundedLog, CUT_MARKER, LineSplitter, logEntryBytes, MAX_LOG_LINE_BYTES } from '../../src/compute/sandbox/log-capture.js';

test('24 MB without a newline becomes one cut line, in one pass, and the next line arrives whole', { timeout: 60_000 }, () => {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  const chunk = Buffer.alloc(64 * 1024, 'a');
  for (let sent = 0; sent < 24 * 1024 * 1024; sent += chunk.length) splitter.push(chunk);
  assert.equal(lines.length, 1, 'the long line is given out once, when it reaches the cap');
  assert.equal(lines[0], 'a'.repeat(MAX_LOG_LINE_BYTES) + CUT_MARKER);
  splitter.push('aaaa tail of the long line\r\nnext line\r\npartial');
  splitter.push(' end\n');
  assert.deepEqual(lines.slice(1), ['next line', 'partial end']);
});

test('a chunk of a million short lines is split in one pass; a cut multi-byte character and a full line', { timeout: 60_000 }, () => {
  let count = 0;
  const splitter = new LineSplitter(() => (count += 1));
  splitter.push(Buffer.from('x\n'.repeat(1_000_000)));
  assert.equal(count, 1_000_000);

  const lines: string[] = [];
  const small = new LineSplitter((line) => lines.push(line), 4);
  small.push('abcd\n');
  small.push(Buffer.from('aé€b\n'));
  small.push('ab');
  small.flush();
  assert.equal(lines[0], 'abcd', 'a line of exactly the cap is whole');
  assert.ok(lines[1].startsWith('aé') && lines[1].endsWith(CUT_MARKER), lines[1]);
  assert.equal(lines[2], 'ab', 'flush gives the partial last line');
});

test("a kept log is bounded in bytes, and one read of an app's log in bytes", () => {
  const log = new BoundedLog<{ line: string }>(5_000, 4 * 1024 * 1024);
  const line = 'b'.repeat(MAX_LOG_LINE_BYTES);
  for (let index = 0; index < 2_000; index++) log.push({ line: `${index} ${line}` });
  const kept = log.newest(Infinity);
  const keptBytes = kept.reduce((sum, entry) => sum + logEntryBytes(entry.line), 0);
  assert.ok(keptBytes <= 4 * 1024 * 1024, `${keptBytes} bytes kept`);
  assert.ok(kept.at(-1)!.line.startsWith('1999 '), 'the newest are kept');
  assert.equal(log.size, kept.length);

  const scheduler = new Proxy({}, { get: () => () => undefined }) as unknown as RuntimeScheduler;
  const runtime = new AppRuntime({ name: 'noisy', projectName: 'p' } as AppRecord, scheduler, pino({ level: 'silent' }), {} as ExchangeMeter);
  for (let index = 0; index < 2_000; index++) runtime.system(1, 'i1', `${index} ${line}`);
  const answer = runtime.tail(5_000);
  const answerBytes = answer.reduce((sum, entry) => sum + logEntryBytes(entry.line), 0);
  assert.ok(answer.length > 0 && answerBytes <= MAX_LOG_ANSWER_BYTES, `${answer.length} lines, ${answerBytes} bytes`);
  assert.ok(answer.at(-1)!.line.startsWith('1999 '), 'the answer ends with the newest line');
  assert.deepEqual(runtime.tail(3).map((entry) => entry.line.split(' ')[0]), ['1997', '1998', '1999']);
});
