/**
 * Compose `secrets` of a template, on the process sandbox and on microVMs (skipped without QEMU): a service that lists them sees each as
 * the file /run/secrets/<target>, holding the value (a file of the template, a generated secret
 * parameter, a secret the project had), with the mode asked (0444 unless given), owned by the
 * service's user, on a tmpfs; never in the app's env, in app/Get or in its logs, and the
 * instance's settings (which hold the values) are not readable by the app's user. A changed
 * secret file reaches the service on template/Update; an external secret that does not exist is
 * refused naming it, before anything is made; Destroy --volumes deletes the stack's secrets, not
 * the project's own.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { eventually, getThroughEdge, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { buildImage, busyboxBinary, startRegistry, type LayerEntry, type TestRegistry } from './images-fixture.js';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand } from '../src/compute/sandbox/common.js';

const APPLETS = ['sh', 'httpd', 'cat', 'echo', 'env', 'grep', 'stat', 'sha256sum', 'awk', 'id', 'mkdir', 'ls'];

/**
 * Runs as www (33): writes a report of /run/secrets (each file's sha256, mode and owner, the
 * filesystem there, how many env lines hold a value, whether settings.sh can be read), prints the
 * password to stdout (the logs must hide it), then serves the report on 8080.
 */
const REPORT = [
  'mkdir -p /tmp/www',
  '{',
  '  echo "uid=$(id -u)"',
  '  echo "fs=$(awk \'$2 == "/run/secrets" {print $3}\' /proc/mounts)"',
  '  for file in /run/secrets/*; do',
  '    name=${file##*/}',
  '    echo "$name.sha256=$(sha256sum "$file" | awk \'{print $1}\')"',
  '    echo "$name.mode=$(stat -c %a "$file")"',
  '    echo "$name.owner=$(stat -c %u:%g "$file")"',
  '    echo "$name.in_env=$(env | grep -c -F "$(cat "$file")")"',
  '  done',
  // settings.sh: /.alto/run/ on the process sandbox, /.alto/ in a microVM guest.
  '  settings=absent',
  '  for f in /.alto/run/settings.sh /.alto/settings.sh; do if [ -e "$f" ]; then if cat "$f" >/dev/null 2>&1; then settings=readable; else settings=unreadable; fi; fi; done',
  '  echo "settings=$settings"',
  '} >/tmp/www/report',
  'echo "the password is $(cat /run/secrets/db_password)"',
  'exec httpd -f -p 8080 -h /tmp/www',
].join('\n');

function readerImage() {
  const layer: LayerEntry[] = [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...APPLETS.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/sh\n' },
    { type: 'file', path: 'etc/group', content: 'root:x:0:\nwww:x:33:\n' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
  ];
  return buildImage({ layers: [layer], config: { Env: ['PATH=/bin'], User: 'www', Entrypoint: ['/bin/sh', '-c'], Cmd: [REPORT], ExposedPorts: { '8080/tcp': {} } } });
}

const COMPOSE = `
services:
  reader:
    image: \${REGISTRY}/secrets/reader:1
    ports: ["8080"]
    secrets:
      - token
      - source: db_pass
        target: /run/secrets/db_password
        mode: 0400
      - source: team
        target: team.txt
        mode: 0440
secrets:
  token:
    file: ./secrets/token.txt
  db_pass:
    environment: DB_PASSWORD
  team:
    external: true
    name: team-token
`;

const ALTO_YAML = `
parameters:
  REGISTRY: {description: the registry holding the image}
  DB_PASSWORD: {description: the database password, secret: true, generate: 24}
`;

const TOKEN = 'file-token-é-value\nsecond line\n';
const TEAM = 'the-team-token-value-42';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const files = (token: string) => ({ 'secrets/token.txt': Buffer.from(token).toString('base64') });

for (const driver of ['process', 'microvm'] as const) describe(`templates: compose secrets as files in /run/secrets (${driver} sandbox)`, { skip: driver === 'microvm' && !hasCommand('qemu-system-x86_64') ? 'QEMU is not installed' : false }, () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();

  before(async () => {
    registry = await startRegistry();
    await registry.push('secrets/reader', '1', await readerImage());
    alto = await startProcess({ dataDir, args: ['--sandbox', driver], env: { ALTO_SANDBOX_CACHE: cache.dir } });
    key = await alto.projectKey('vault', ['template', 'app', 'secret']);
    assert.equal((await alto.call('secret', 'Set', { key: 'team-token', value: TEAM }, key)).status, 200);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const deploy = (endpoint: 'Deploy' | 'Update', token: string, compose = COMPOSE) =>
    alto.call('template', endpoint, { name: 'sec', compose, alto: ALTO_YAML, files: files(token), set: { REGISTRY: registry.host } }, key);

  async function report(): Promise<Record<string, string>> {
    const answer = await eventually(async () => {
      const got = await getThroughEdge(Number(new URL(alto.url).port), `sec-reader.vault.localhost:${new URL(alto.url).port}`, '/report');
      return got.status === 200 ? got : undefined;
    }, 'the report of /run/secrets', 60_000);
    assert.equal(answer.status, 200, answer.body);
    return Object.fromEntries(answer.body.trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  }

  test('each secret is a file with its value, mode and owner on a tmpfs, and its value is nowhere else', async () => {
    const deployed = await deploy('Deploy', TOKEN);
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    assert.deepEqual([...deployed.body.secrets].sort(), ['sec-db-password', 'sec-token', 'team-token']);
    const password = (await alto.call('secret', 'Get', { key: 'sec-db-password' }, key)).body.value as string;
    assert.equal(password.length, 24);
    assert.equal((await alto.call('secret', 'Get', { key: 'sec-token' }, key)).body.value, TOKEN, 'the file is kept whole, as the stack\'s secret');
    const values = [TOKEN, password, TEAM];
    for (const value of values) assert.ok(!JSON.stringify(deployed.body).includes(value.trim()), 'the deploy answers no value');

    const seen = await report();
    assert.deepEqual(seen, {
      uid: '33',
      fs: 'tmpfs',
      'db_password.sha256': sha256(password),
      'db_password.mode': '400',
      'db_password.owner': '33:33',
      'db_password.in_env': '0',
      'team.txt.sha256': sha256(TEAM),
      'team.txt.mode': '440',
      'team.txt.owner': '33:33',
      'team.txt.in_env': '0',
      'token.sha256': sha256(TOKEN),
      'token.mode': '444',
      'token.owner': '33:33',
      'token.in_env': '0',
      settings: 'unreadable',
    });

    const app = await alto.call('app', 'Get', { name: 'sec-reader' }, key);
    assert.equal(app.status, 200);
    const shown = JSON.stringify(app.body);
    for (const value of values) assert.ok(!shown.includes(value.trim()) && !shown.includes('second line'), 'app/Get shows no value');
    assert.deepEqual(app.body.service.secret_files, [
      { secret: 'sec-token', target: 'token', mode: 0o444 },
      { secret: 'sec-db-password', target: 'db_password', mode: 0o400 },
      { secret: 'team-token', target: 'team.txt', mode: 0o440 },
    ]);
    assert.deepEqual([app.body.service.hidden_env, app.body.service.secrets, app.body.service.env_vars.DB_PASSWORD], [[], [], undefined], 'no secret reaches the env');
    // The app's record keeps the files' values sealed: a copy of the database does not show them.
    const database = ['alto.db', 'alto.db-wal'].map((name) => join(dataDir, name)).filter((path) => existsSync(path)).map((path) => readFileSync(path).toString('latin1')).join('');
    assert.match(database, /"secret_files"|"files"/, 'the app record is in the database');
    for (const value of [TEAM, 'file-token-', password]) assert.ok(!database.includes(value), `the database holds ${value.slice(0, 8)}... in plain text`);

    // The app printed the password: its log shows where it came from, never the value.
    const logs = await eventually(async () => {
      const answer = await alto.call('app', 'Logs', { name: 'sec-reader' }, key);
      return answer.status === 200 && /the password is/.test(answer.body.logs) ? answer.body.logs as string : undefined;
    }, 'the password line in the logs');
    assert.ok(!logs.includes(password), logs);
    assert.match(logs, /the password is \[hidden \/run\/secrets\/db_password\]/);
  });

  test('a changed secret file reaches the service on Update; the other secrets stay', async () => {
    const password = (await alto.call('secret', 'Get', { key: 'sec-db-password' }, key)).body.value as string;
    const updated = await deploy('Update', 'rotated-token');
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.deepEqual(updated.body.changes.map((change: { service: string; change: string }) => [change.service, change.change]), [['reader', 'updated']]);
    const seen = await eventually(async () => {
      const now = await report();
      return now['token.sha256'] === sha256('rotated-token') ? now : undefined;
    }, 'the rotated token in /run/secrets');
    assert.equal(seen['db_password.sha256'], sha256(password), 'the generated password is kept');
  });

  // Refused before any sandbox is asked: the same on both drivers.
  test('an external secret the project lacks is refused naming it, and nothing is made', { skip: driver === 'microvm' ? 'refused before any sandbox: the process run covers it' : false }, async () => {
    const compose = COMPOSE.replace('name: team-token', 'name: no-such-token');
    const refused = await alto.call('template', 'Deploy', { name: 'other', compose, alto: ALTO_YAML, files: files(TOKEN), set: { REGISTRY: registry.host } }, key);
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.match(refused.body.detail, /secrets\.team: the external secret "no-such-token" is not a secret of this project/);
    const keys = (await alto.call('secret', 'List', {}, key)).body.keys as string[];
    assert.ok(!keys.some((each) => each.startsWith('other-')), keys.join(', '));
    assert.equal((await alto.call('app', 'Get', { name: 'other-reader' }, key)).status, 404);
  });

  test("destroy --volumes deletes the stack's secrets and keeps the project's own", async () => {
    const destroyed = await alto.call('template', 'Destroy', { name: 'sec', volumes: true }, key);
    assert.equal(destroyed.status, 200, JSON.stringify(destroyed.body));
    const keys = (await alto.call('secret', 'List', {}, key)).body.keys as string[];
    assert.deepEqual(keys.sort(), ['team-token']);
  });
});
