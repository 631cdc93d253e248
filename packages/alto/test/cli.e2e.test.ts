/**
 * The `alto` command against a running server: login and profiles, projects, keys, and
 * `alto call` for any endpoint, with JSON output for scripts and exit codes on failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ALTO_ROOT, CLI_ENTRY, startInProcess, type TestAlto } from './harness.js';

const run = promisify(execFile);

describe('alto CLI', () => {
  let alto: TestAlto;
  let env: Record<string, string>;

  async function cli(args: string[], extraEnv: Record<string, string> = {}) {
    try {
      const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args], {
        env: { ...process.env, ...env, ...extraEnv },
      });
      return { code: 0, stdout, stderr };
    } catch (error: any) {
      return { code: error.code as number, stdout: error.stdout as string, stderr: error.stderr as string };
    }
  }

  before(async () => {
    alto = await startInProcess();
    const home = mkdtempSync(join(tmpdir(), 'alto-cli-'));
    env = { ALTO_CONFIG: join(home, 'config.json'), ALTO_DATA: join(home, 'none'), NO_COLOR: '1' };
  });
  after(() => alto.close());

  test('login saves an owner-only profile after checking the key; a bad key is refused', async () => {
    const refused = await cli(['login', '--url', alto.url, '--key', 'alto_wrong']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /the key was refused: the API key is not valid/);

    const ok = await cli(['login', '--url', alto.url, '--key', alto.adminKey]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(statSync(env.ALTO_CONFIG).mode & 0o777, 0o600);
    const config = JSON.parse(readFileSync(env.ALTO_CONFIG, 'utf8'));
    assert.equal(config.profiles.default.url, alto.url);

    const status = await cli(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const body = JSON.parse(status.stdout);
    assert.equal(body.ready, true);
    assert.equal(body.key.role, 'admin');
    assert.ok(body.services.includes('id'));
  });

  test('projects and keys', async () => {
    const created = await cli(['projects', 'create', 'cli-shop', '--json']);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(JSON.parse(created.stdout).project.name, 'cli-shop');
    const listed = JSON.parse((await cli(['projects', 'list', '--json'])).stdout);
    assert.ok(listed.projects.some((project: any) => project.name === 'cli-shop'));

    const generated = await cli(['keys', 'generate', '--project', 'cli-shop', '--scopes', 'id', '--description', 'from cli', '--json']);
    assert.equal(generated.code, 0, generated.stderr);
    const { key, info } = JSON.parse(generated.stdout);
    assert.deepEqual(info.scopes, ['id']);

    const called = await cli(['call', 'id', 'Generate', '--type', 'ulid', '--key', key, '--json']);
    assert.equal(called.code, 0, called.stderr);
    assert.equal(JSON.parse(called.stdout).type, 'ulid');

    const keys = JSON.parse((await cli(['keys', 'list', '--project', 'cli-shop', '--json'])).stdout).keys;
    assert.equal(keys[0].description, 'from cli');

    assert.equal((await cli(['keys', 'revoke', info.id])).code, 0);
    const refused = await cli(['call', 'id', 'Generate', '--key', key]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /the API key was revoked \(unauthorized, 401\)/);
  });

  test('call takes a JSON body or typed --field values, and streams line by line', async () => {
    const json = await cli(['call', 'id', 'Generate', '{"type":"ksuid"}', '--json']);
    assert.equal(JSON.parse(json.stdout).type, 'ksuid');
    const stream = await cli(['call', 'id', 'Stream', '--type', 'snowflake', '--count', '4']);
    assert.equal(stream.code, 0, stream.stderr);
    const lines = stream.stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(lines.length, 4);
    assert.ok(lines.every((line) => line.type === 'snowflake'));
    const badNumber = await cli(['call', 'id', 'Stream', '--count', 'lots']);
    assert.equal(badNumber.code, 1);
    assert.match(badNumber.stderr, /--count must be a number/);
  });

  test('unknown services and endpoints are named; the server being down is exit code 2', async () => {
    const service = await cli(['call', 'nosuch', 'Thing']);
    assert.equal(service.code, 1);
    assert.match(service.stderr, /service "nosuch" does not exist; services: .*id/);
    const endpoint = await cli(['call', 'id', 'Nope']);
    assert.match(endpoint.stderr, /endpoint "Nope" does not exist on "id"; it has Generate, Types, Stream/);
    const down = await cli(['call', 'id', 'Generate', '--url', 'http://127.0.0.1:9', '--key', 'x']);
    assert.equal(down.code, 2);
    assert.match(down.stderr, /cannot reach Alto/);
  });

  test('without a profile it finds a local instance through its data folder', async () => {
    const local = await cli(['call', 'id', 'Types', '--json'], {
      ALTO_CONFIG: join(mkdtempSync(join(tmpdir(), 'alto-cli-')), 'none.json'),
      ALTO_DATA: alto.dataDir,
      ALTO_PORT: new URL(alto.url).port,
    });
    assert.equal(local.code, 0, local.stderr);
    assert.ok(JSON.parse(local.stdout).types.includes('uuid'));
  });

  test('the installed command (compiled) works too', async () => {
    const { stdout } = await run(process.execPath, [join(ALTO_ROOT, 'bin/alto.js'), 'call', 'id', 'Generate', '--type', 'nanoid', '--json'], {
      env: { ...process.env, ...env },
    });
    assert.equal(JSON.parse(stdout).type, 'nanoid');
  });
});
