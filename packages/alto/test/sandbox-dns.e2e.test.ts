/**
 * Name resolution in sandboxes, end to end on the process driver: a real `alto up --sandbox
 * process` whose resolver forwards to an upstream DNS server this file runs on 127.0.0.1
 * (`ALTO_DNS_UPSTREAM`; its records name 127.0.0.x addresses, never connected to). A busybox app
 * prints its /etc/resolv.conf and what `nslookup` (busybox's own DNS client, which reads that
 * file) gets for a public-looking name and for its link's name. With outbound access the public
 * name resolves through Alto's resolver; without it the answer is REFUSED and the upstream is
 * never asked; the link's name resolves in both, to the address /etc/hosts gives it.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { buildImage, busyboxBinary, startRegistry, type BuiltImage, type LayerEntry, type TestRegistry } from './images-fixture.js';
import { eventually, privateSandboxCache } from './apps-fixture.js';
import { startDnsUpstream, type DnsUpstream } from '../src/compute/sandbox/test-dns-upstream.js';

const PROJECT = 'names';
/** The upstream's records (A only; a known name has no records of other types). */
const RECORDS = { 'open.example': ['127.0.0.7'], 'closed.example': ['127.0.0.8'] };

/** Busybox that prints its resolv.conf, then nslookup of $LOOKUP and of `cache` (its link), then serves HTTP. */
function lookupImage(): Promise<BuiltImage> {
  const script = [
    'sed "s/^/resolv.conf: /" /etc/resolv.conf',
    'sed "s/^/hosts: /" /etc/hosts',
    'for name in $LOOKUP cache; do nslookup -type=a "$name" 2>&1 | sed "s/^/lookup $name: /"; done',
    'echo lookups-done',
    'exec httpd -f -p 8080 -h /www',
  ].join('\n');
  const layer: LayerEntry[] = [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...['sh', 'sed', 'nslookup', 'httpd', 'echo'].map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    // What an image may carry: Alto's file replaces it.
    { type: 'file', path: 'etc/resolv.conf', content: 'nameserver 192.0.2.53\n' },
    { type: 'dir', path: 'www/' },
    { type: 'file', path: 'www/index.html', content: 'lookups\n' },
  ];
  return buildImage({ layers: [layer], config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: [script], ExposedPorts: { '8080/tcp': {} } } });
}

describe('name resolution in sandboxes (process driver)', () => {
  let registry: TestRegistry;
  let alto: ServerProcess;
  let key: string;
  let upstream: DnsUpstream;
  const cache = privateSandboxCache();
  const dataDir = temporaryDataDir();
  const call = (endpoint: string, body: unknown) => alto.call('app', endpoint, body, key);
  const report = (name: string) =>
    eventually(async () => {
      const lines = ((await call('Logs', { name, stream: 'stdout' })).body.lines as { line: string }[]).map((entry) => entry.line);
      return lines.includes('lookups-done') && lines;
    }, `${name}'s lookups`, 60_000);

  before(async () => {
    upstream = await startDnsUpstream(RECORDS);
    registry = await startRegistry();
    await registry.push('dns/lookup', 'v1', await lookupImage());
    alto = await startProcess({ dataDir, args: ['--sandbox', 'process'], env: { ALTO_SANDBOX_CACHE: cache.dir, ALTO_DNS_UPSTREAM: `127.0.0.1:${upstream.port}` } });
    key = await alto.projectKey(PROJECT, ['app']);
  });

  after(async () => {
    await alto?.close();
    await registry?.stop();
    await upstream?.stop();
    cache.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('an app with outbound access resolves public names through Alto\'s resolver, one without gets REFUSED; both resolve their links', async () => {
    const image = `${registry.host}/dns/lookup:v1`;
    const [open, closed] = await Promise.all([
      call('Run', { name: 'open', image, outbound: true, links: ['cache'], env_vars: { LOOKUP: 'open.example' } }),
      call('Run', { name: 'closed', image, links: ['cache'], env_vars: { LOOKUP: 'closed.example' } }),
    ]);
    assert.equal(open.status, 200, JSON.stringify(open.body));
    assert.equal(closed.status, 200, JSON.stringify(closed.body));
    const [openLines, closedLines] = await Promise.all([report('open'), report('closed')]);

    for (const lines of [openLines, closedLines]) {
      const text = lines.join('\n');
      // resolv.conf written anew: Alto's resolver on the instance's gateway, Docker's ndots:0.
      const nameservers = lines.filter((line) => line.startsWith('resolv.conf: nameserver'));
      assert.equal(nameservers.length, 1, text);
      const gateway = /^resolv\.conf: nameserver (10\.231\.\d+\.\d+)$/.exec(nameservers[0])?.[1];
      assert.ok(gateway, text);
      assert.ok(lines.includes('resolv.conf: options ndots:0'), text);
      assert.ok(!text.includes('192.0.2.53'), 'the image\'s resolv.conf is gone');
      // The link's name resolves to the address /etc/hosts gives it (its relay on the gateway).
      assert.ok(lines.includes(`hosts: ${gateway} cache # alto link`), text);
      assert.ok(lines.some((line) => line === `lookup cache: Address: ${gateway}`), text);
    }
    assert.ok(openLines.includes('lookup open.example: Address: 127.0.0.7'), openLines.join('\n'));
    assert.ok(closedLines.some((line) => /^lookup closed\.example: .*REFUSED/.test(line)), closedLines.join('\n'));
    assert.ok(!closedLines.some((line) => line.includes('127.0.0.8')), closedLines.join('\n'));
    // The upstream was asked for the outbound app's name, never for the other's nor the link's.
    assert.ok(upstream.asked('open.example').length > 0);
    assert.equal(upstream.asked('closed.example').length, 0);
    assert.equal(upstream.asked('cache').length, 0);
  });
});
