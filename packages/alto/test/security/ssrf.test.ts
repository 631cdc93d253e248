/**
 * SSRF: every connection Alto makes on a project's behalf (SMTP, git clones, registry pulls,
 * cron callbacks) goes through the outbound guard. The attacks aim only at listeners this test
 * starts on 127.0.0.1 (and ::1), reached by names and encodings that resolve there; each
 * listener counts connections and answers a marker, which must never reach the attacker.
 * Other ranges are checked on the guard's classification of address literals (no connection).
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ImageManager } from '../../src/compute/images/manager.js';
import { silentLogger } from '../../src/kit/logger.js';
import { forbiddenReason, pinnedLookup, resolveOutbound } from '../../src/kit/outbound-guard.js';
import { SqliteImageRecordStore } from '../../src/store/images/sqlite.js';
import { openSqlite } from '../../src/store/sqlite/database.js';
import { webImage } from '../apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from '../harness.js';
import { startProxy, startRegistry, type TestRegistry } from '../images-fixture.js';

const MARKER = 'MARKER-7f3a9c-peer-bytes';

interface MarkerListener {
  port: number;
  connections(): number;
  close(): void;
}

/** A TCP listener that counts connections and answers each with the marker (as an SMTP greeting and as an HTTP answer). */
async function markerListener(address: string): Promise<MarkerListener | undefined> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.write(`500 ${MARKER}\r\n`);
    socket.once('data', () => {
      const body = `${MARKER} ${JSON.stringify({ errors: [{ code: 'DENIED', message: MARKER }] })}`;
      socket.end(`HTTP/1.1 400 ${MARKER}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, address, resolve);
    });
  } catch {
    return undefined;
  }
  return {
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

test('the guard refuses every non-public range and form, on literals (no connection made)', () => {
  const refused = [
    '127.0.0.1', '127.255.0.9', '0.0.0.0', '0.1.2.3', '10.0.0.1', '100.64.0.1', '100.127.255.254', '169.254.169.254', '172.16.0.1', '172.31.9.9',
    '192.0.0.8', '192.0.2.1', '192.88.99.1', '192.168.1.1', '198.18.0.1', '198.19.255.255', '198.51.100.7', '203.0.113.9', '224.0.0.1', '239.255.255.250',
    '240.0.0.1', '255.255.255.255',
    '::', '::1', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'fe80::1%1', 'fec0::1', 'ff02::1', '2001:db8::1', '100::1', '2001::1', '2001:2::1',
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:169.254.169.254', '::ffff:0:7f00:1', '::127.0.0.1', '::7f00:1', '::8.8.8.8',
    '64:ff9b::127.0.0.1', '64:ff9b::a9fe:a9fe', '64:ff9b::c0a8:101', '64:ff9b:1::1', '64:ff9b:1:ffff::8.8.8.8',
    '2002:7f00:1::1', '2002:a9fe:a9fe::', '2002:c0a8:101::1',
    'localhost', 'not an address',
  ];
  for (const address of refused) assert.ok(forbiddenReason(address), `${address} must be refused`);
  const allowed = ['8.8.8.8', '93.184.216.34', '172.32.0.1', '100.128.0.1', '198.20.0.1', '2606:4700::1111', '2a00:1450::1', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'];
  for (const address of allowed) assert.equal(forbiddenReason(address), undefined, address);
});

test('the guard normalises numeric host forms, and the pinned lookup answers only the checked address', async () => {
  for (const host of ['2130706433', '0x7f000001', '0x7f.1', '127.1', '017700000001', 'localhost', '[::ffff:127.0.0.1]', '[::1]']) {
    await assert.rejects(resolveOutbound(host), /is \(or resolves to\) a (loopback|"this network")/, host);
  }
  const allowed = await resolveOutbound('127.1', { allowPrivate: true });
  assert.deepEqual(allowed, { host: '127.0.0.1', addresses: [{ address: '127.0.0.1', family: 4 }] });
  const lookup = pinnedLookup({ host: 'registry.example', addresses: [{ address: '93.184.216.34', family: 4 }] });
  const answered = await new Promise((resolve) => lookup('anything.else', { all: true }, (_error, addresses) => resolve(addresses)));
  assert.deepEqual(answered, [{ address: '93.184.216.34', family: 4 }]);
});

describe('SSRF through the server, with a project key', () => {
  let alto: ServerProcess;
  let v4: MarkerListener;
  let v6: MarkerListener | undefined;
  let key: string;
  const dataDir = temporaryDataDir();
  const strictEnv = { ALTO_TRUSTED_REGISTRIES: '', ALTO_ALLOW_PRIVATE_CALLBACKS: '', ALTO_TRUSTED_GIT_HOSTS: '', ALTO_FUNCTIONS_NODE: 'host' };

  /** Hosts (with port) that all land on the test's own listeners. */
  const loopbackHosts = () => [
    `127.0.0.1:${v4.port}`,
    `localhost:${v4.port}`,
    `127.1:${v4.port}`,
    `2130706433:${v4.port}`,
    `0x7f000001:${v4.port}`,
    `0x7f.1:${v4.port}`,
    `[::ffff:127.0.0.1]:${v4.port}`,
    ...(v6 ? [`[::1]:${v6.port}`] : []),
  ];
  const reached = () => v4.connections() + (v6?.connections() ?? 0);

  before(async () => {
    v4 = (await markerListener('127.0.0.1'))!;
    v6 = await markerListener('::1');
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: strictEnv });
    key = await alto.projectKey('attacker', ['*']);
  });
  after(async () => {
    await alto?.close();
    v4?.close();
    v6?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('email/SetSmtp refuses loopback in every spelling, and nothing connects', async () => {
    for (const host of loopbackHosts()) {
      const set = await alto.call('email', 'SetSmtp', { url: `smtp://user:pass@${host}` }, key);
      assert.equal(set.status, 400, `${host}: ${JSON.stringify(set.body)}`);
      assert.doesNotMatch(JSON.stringify(set.body), new RegExp(MARKER));
    }
    assert.equal(reached(), 0, 'no SMTP connection reached the listener');
  });

  test('git repositories: loopback over http(s), and git://, ssh://, file://, ext:: and option-like URLs are refused', async () => {
    const repos = [
      ...loopbackHosts().flatMap((host) => [`https://${host}/org/repo.git`, `http://${host}/org/repo.git`]),
      `git://127.0.0.1:${v4.port}/org/repo.git`,
      `ssh://git@127.0.0.1:${v4.port}/org/repo.git`,
      'file:///etc',
      `ext::sh -c "nc 127.0.0.1 ${v4.port}"`,
      `-uexit`,
      `--upload-pack=touch /tmp/x`,
    ];
    for (const repo of repos) {
      const deployed = await alto.call('function', 'Deploy', { name: 'fn', repo }, key);
      assert.ok(deployed.status >= 400 && deployed.status < 500, `${repo}: ${deployed.status} ${JSON.stringify(deployed.body)}`);
      assert.doesNotMatch(JSON.stringify(deployed.body), new RegExp(MARKER));
    }
    const sourceApp = await alto.call('app', 'Run', { name: 'src', repo: `https://127.0.0.1:${v4.port}/org/app.git` }, key);
    assert.equal(sourceApp.status, 400, JSON.stringify(sourceApp.body));
    assert.equal(reached(), 0, 'no git connection reached the listener');
  });

  test('app/Run does not pull from a loopback registry for a project, and says nothing the peer sent', async () => {
    for (const host of loopbackHosts()) {
      const run = await alto.call('app', 'Run', { name: 'pulled', image: `${host}/org/app:v1` }, key);
      assert.ok(run.status >= 400 && run.status < 500, `${host}: ${run.status} ${JSON.stringify(run.body)}`);
      assert.doesNotMatch(JSON.stringify(run.body), new RegExp(MARKER));
      const insecure = await alto.call('app', 'Run', { name: 'pulled', image: `${host}/org/app:v1`, insecure: true }, key);
      assert.ok(insecure.status >= 400 && insecure.status < 500, `${host}: ${insecure.status}`);
    }
    assert.equal(reached(), 0, 'no registry request reached the listener');
  });

  test('cron callbacks to loopback in every spelling are refused', async () => {
    for (const host of loopbackHosts()) {
      const scheduled = await alto.call('cron', 'Schedule', { name: 'x', interval: '* * * * *', callback: `http://${host}/hook` }, key);
      assert.equal(scheduled.status, 400, `${host}: ${JSON.stringify(scheduled.body)}`);
    }
    assert.equal(reached(), 0);
  });

  test('an SMTP server stored while private targets were allowed is refused at delivery, without a connection', async () => {
    await alto.close();
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ...strictEnv, ALTO_ALLOW_PRIVATE_CALLBACKS: '1' } });
    const set = await alto.call('email', 'SetSmtp', { url: `smtp://user:pass@localhost:${v4.port}` }, key);
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.equal(reached(), 0, 'setting the server makes no connection');
    await alto.close();
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: strictEnv });
    const sent = await alto.call('email', 'Send', { to: 'joe@example.com', subject: 's', text_body: 't' }, key);
    assert.equal(sent.status, 400, JSON.stringify(sent.body));
    assert.doesNotMatch(JSON.stringify(sent.body), new RegExp(MARKER));
    const [kept] = (await alto.call('email', 'Outbox', { limit: 1 }, key)).body.messages;
    assert.equal(kept.status, 'failed');
    assert.doesNotMatch(kept.error, new RegExp(MARKER));
    assert.equal(reached(), 0, 'no delivery reached the listener');
  });
});

describe('an SMTP peer that is not a mail server: its words never reach the project', () => {
  let alto: ServerProcess;
  let listener: MarkerListener;
  const dataDir = temporaryDataDir();

  before(async () => {
    listener = (await markerListener('127.0.0.1'))!;
    // In development private targets are allowed: the connection is made, the answer is not echoed.
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_ALLOW_PRIVATE_CALLBACKS: '1' } });
  });
  after(async () => {
    await alto?.close();
    listener?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('Send fails with a fixed sentence, not the banner', async () => {
    const key = await alto.projectKey('dev', ['email']);
    assert.equal((await alto.call('email', 'SetSmtp', { url: `smtp://127.0.0.1:${listener.port}` }, key)).status, 200);
    const sent = await alto.call('email', 'Send', { to: 'joe@example.com', subject: 's', text_body: 't' }, key);
    assert.ok(sent.status >= 400, JSON.stringify(sent.body));
    assert.ok(listener.connections() > 0, 'the connection was made (development allows it)');
    assert.doesNotMatch(JSON.stringify(sent.body), new RegExp(MARKER));
    const [kept] = (await alto.call('email', 'Outbox', { limit: 1 }, key)).body.messages;
    assert.doesNotMatch(kept.error, new RegExp(MARKER));
  });
});

describe('trusted registries', () => {
  let registry: TestRegistry;
  const workspace = mkdtempSync(join(tmpdir(), 'alto-ssrf-images-'));
  const database = openSqlite(join(workspace, 'alto.db'));
  const records = new SqliteImageRecordStore(database);

  before(async () => {
    registry = await startRegistry();
    await registry.push('team/web', 'v1', await webImage('trusted', 'trusted\n'));
  });
  after(async () => {
    await registry?.stop();
    database.close();
    rmSync(workspace, { recursive: true, force: true });
  });

  test('a project pulls from a loopback registry the operator trusts, and from no other', async () => {
    const untrusted = new ImageManager({ root: join(workspace, 'a'), records, log: silentLogger() });
    await assert.rejects(untrusted.pull(`${registry.host}/team/web:v1`, { project: 'p1' }), /is \(or resolves to\) a loopback address/);
    const trusted = new ImageManager({ root: join(workspace, 'b'), records, log: silentLogger(), trustedRegistries: [registry.host] });
    const pulled = await trusted.pull(`${registry.host}/team/web:v1`, { project: 'p1' });
    assert.ok(trusted.mayUse(pulled.digest, 'p1'));
  });

  test('a redirect from a trusted registry to an untrusted loopback host is refused, and that host sees nothing', async () => {
    const proxy = await startProxy(registry.host, { redirectBlobsTo: registry });
    try {
      const manager = new ImageManager({ root: join(workspace, 'c'), records, log: silentLogger(), trustedRegistries: [proxy.host], blobAttempts: 1 });
      await assert.rejects(manager.pull(`${proxy.host}/team/web:v1`, { project: 'p2' }), (error: Error) => !error.message.includes(MARKER));
      assert.equal(proxy.storageRequests, 0, 'the storage host was never asked');
    } finally {
      await proxy.close();
    }
  });
});
