import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { InfoLine } from './logger.js';

const loggerModule = fileURLToPath(new URL('./logger.ts', import.meta.url));

/** Runs `body` (a module's text, with `createLogger` and `InfoLine` imported) in a new process with JSON logs. */
function runWithLogger(body: string, env: Record<string, string> = {}): { stdout: string; status: number | null } {
  const source = `import { createLogger, InfoLine } from ${JSON.stringify(loggerModule)};\n${body}`;
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], {
    env: { ...process.env, ALTO_LOG_FORMAT: 'json', ALTO_LOG_LEVEL: 'info', ...env },
    encoding: 'utf8',
  });
  return { stdout: result.stdout, status: result.status };
}

test('every line logged is written, when the process exits at once and when it crashes', () => {
  const exits = runWithLogger(`const log = createLogger(); for (let i = 0; i < 5000; i++) log.info({ i }, 'line'); process.exit(0);`);
  assert.equal(exits.status, 0);
  assert.deepEqual(exits.stdout.trim().split('\n').map((line) => JSON.parse(line).i), [...Array(5000).keys()]);

  const crashes = runWithLogger(`const log = createLogger(); for (let i = 0; i < 5000; i++) log.info({ i }, 'line'); throw new Error('boom');`);
  assert.equal(crashes.status, 1);
  assert.equal(crashes.stdout.trim().split('\n').length, 5000);
});

test('an InfoLine writes what pino writes for the same fields, and nothing below the level', () => {
  const { stdout } = runWithLogger(`
    const log = createLogger().child({ service: 'id', endpoint: 'Generate' });
    const fields = { req_id: 'trace-1', status: 200, ms: 0.731, note: 'a "quoted" é' };
    log.info(fields, 'api call');
    new InfoLine(log, 'api call').write(fields);
    const quiet = createLogger({ level: 'warn' });
    new InfoLine(quiet, 'api call').write(fields);
  `);
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 2, 'the warn-level logger wrote nothing');
  const withoutTime = (line: string) => line.replace(/"time":"[^"]+"/, '"time":""');
  assert.equal(withoutTime(lines[1]), withoutTime(lines[0]));
  assert.deepEqual(Object.keys(JSON.parse(lines[1])), ['level', 'time', 'service', 'endpoint', 'req_id', 'status', 'ms', 'note', 'msg']);
});

test('an InfoLine on a logger not made by createLogger goes through pino', () => {
  const written: string[] = [];
  const output = new Writable({
    write(chunk, _encoding, done) {
      written.push(chunk.toString());
      done();
    },
  });
  const log = pino({ level: 'info', base: undefined }, output).child({ service: 'id' });
  new InfoLine(log, 'api call').write({ req_id: 'r', status: 404 });
  assert.equal(written.length, 1);
  const entry = JSON.parse(written[0]);
  assert.deepEqual([entry.service, entry.req_id, entry.status, entry.msg], ['id', 'r', 404, 'api call']);
});
