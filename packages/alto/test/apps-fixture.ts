/**
 * Helpers for the app tests: small busybox app images built in code (httpd serving a page, a
 * CGI that makes the app crash, an app that fails at start, an app that probes what it can
 * reach), HTTP requests through the edge with an app's Host header, the `alto` CLI, and a
 * private sandbox cache that shares the guest kernel with the default one but keeps the per-run
 * disk images and id-shifted root copies (keyed by root filesystem path, so new on every run)
 * out of it.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultSandboxCacheDir } from '../src/compute/sandbox/index.js';
import { CLI_ENTRY } from './harness.js';
import { buildImage, busyboxBinary, type BuiltImage, type LayerEntry } from './images-fixture.js';

const execFileAsync = promisify(execFile);

const APPLETS = ['sh', 'httpd', 'sleep', 'touch', 'echo', 'cat', 'nc', 'ip', 'awk', 'grep', 'id', 'ls', 'hostname', 'printf'];

function busyboxLayer(): LayerEntry[] {
  return [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...APPLETS.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/sh\n' },
    { type: 'file', path: 'etc/group', content: 'root:x:0:\nwww:x:33:\n' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
  ];
}

/**
 * A CGI script: asking for /cgi-bin/crash makes the app's main process exit with code 3, half a
 * second later, so the answer reaches the client before the instance goes.
 */
const CRASH_CGI = "#!/bin/sh\n(sleep 0.5; touch /tmp/crash) >/dev/null 2>&1 </dev/null &\nprintf 'Content-Type: text/plain\\r\\n\\r\\ncrash scheduled\\n'\n";

/**
 * busybox httpd serving `page` on 8080, saying `<label> starting` first; its shell exits with
 * code 3 (after writing "crashing on purpose" to stderr) once /cgi-bin/crash was requested.
 * `cgi` adds scripts under /cgi-bin/ by name.
 */
export function webImage(label: string, page: string, cgi: Record<string, string> = {}): Promise<BuiltImage> {
  const script = [
    `echo "${label} starting"`,
    'httpd -f -v -p 8080 -h /www &',
    'while [ ! -e /tmp/crash ]; do sleep 0.1; done',
    'echo "crashing on purpose" >&2',
    'exit 3',
  ].join('\n');
  return buildImage({
    layers: [
      busyboxLayer(),
      [
        { type: 'dir', path: 'www/' },
        { type: 'file', path: 'www/index.html', content: page },
        { type: 'dir', path: 'www/cgi-bin/' },
        { type: 'file', path: 'www/cgi-bin/crash', content: CRASH_CGI, mode: 0o755 },
        ...Object.entries(cgi).map(([name, content]): LayerEntry => ({ type: 'file', path: `www/cgi-bin/${name}`, content, mode: 0o755 })),
      ],
    ],
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: [script], ExposedPorts: { '8080/tcp': {} } },
  });
}

/** An app that fails at once: it never listens. */
export function brokenImage(): Promise<BuiltImage> {
  return buildImage({
    layers: [busyboxLayer()],
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo "broken: no configuration found" >&2; exit 1'], ExposedPorts: { '8080/tcp': {} } },
  });
}

/**
 * httpd on 8080 plus probes of what the app can reach: the host's loopback server
 * ($HOST_PORT), Alto's edge ($EDGE_PORT) and another tenant's instance ($PEER_PORT, optional) at
 * 127.0.0.1, QEMU's host alias 10.0.2.2, the default gateway and the other instance's own
 * address ($PEER_HOST, optional). First `self-check: ok` once nc reaches the app's own httpd (so
 * a blocked probe means blocked, not a missing tool); each probe prints
 * `reach <target>:<port>: open|blocked` (the probes run side by side: a dropped packet costs
 * nc's 1 s timeout), then `probes-done`.
 */
export function proberImage(): Promise<BuiltImage> {
  const script = [
    'httpd -f -p 8080 -h /www &',
    // The probes' tools work: the app reaches its own server over its own loopback.
    'until printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 1 127.0.0.1 8080 | grep -q prober; do sleep 0.1; done; echo "self-check: ok"',
    'gateway=$(ip route | awk "/default/ {print \\$3}")',
    'probes=',
    'probe() { ( if echo hello | nc -w 1 $1 $2 >/dev/null 2>&1; then echo "reach $1:$2: open"; else echo "reach $1:$2: blocked"; fi ) & probes="$probes $!"; }',
    'for port in $HOST_PORT $EDGE_PORT; do for target in 127.0.0.1 10.0.2.2 $gateway; do probe $target $port; done; done',
    // Not 127.0.0.1 here: the peer's port inside a sandbox may be this app's own port.
    'if [ -n "$PEER_PORT" ]; then for target in $PEER_HOST 10.0.2.2 $gateway; do probe $target $PEER_PORT; done; fi',
    'wait $probes',
    'echo probes-done',
    'wait',
  ].join('\n');
  return buildImage({
    layers: [busyboxLayer(), [{ type: 'dir', path: 'www/' }, { type: 'file', path: 'www/index.html', content: 'prober\n' }]],
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: [script], ExposedPorts: { '8080/tcp': {} } },
  });
}

export interface HttpResult {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** GET through the edge at 127.0.0.1:`port` with the given Host header (as curl --resolve would). */
export function getThroughEdge(port: number, host: string, path = '/'): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers: { host }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: response.headers }));
      response.on('error', reject);
    });
    request.setTimeout(15_000, () => request.destroy(new Error('request timed out')));
    request.on('error', reject);
    request.end();
  });
}

/** Polls an async condition until it holds (or fails with what it waited for). */
export async function eventually<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `alto` command. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error: any) {
    return { code: error.code as number, stdout: error.stdout as string, stderr: error.stderr as string };
  }
}

/**
 * A sandbox cache for one test file: the guest kernel, initramfs and tools are shared with the
 * default cache (links), while the disk images and id-shifted copies made for this run's root
 * filesystems land here and go with `remove()`.
 */
export function privateSandboxCache(): { dir: string; remove(): void } {
  const shared = defaultSandboxCacheDir();
  mkdirSync(shared, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), 'alto-apps-cache-'));
  for (const name of ['kernel', 'initramfs', 'tools']) {
    mkdirSync(join(shared, name), { recursive: true });
    if (!existsSync(join(dir, name))) symlinkSync(join(shared, name), join(dir, name));
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A TCP server that a sandbox must not reach: it counts and drops every connection it gets. */
export interface ForbiddenServer {
  port: number;
  connections(): number;
  close(): void;
}

/** Listens on `address` (any free port) until closed. */
export async function forbiddenServer(address: string): Promise<ForbiddenServer> {
  let connections = 0;
  const server = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  return { port: (server.address() as { port: number }).port, connections: () => connections, close: () => void server.close() };
}

/**
 * busybox httpd on 8080 under a shell that reports how it is stopped: on SIGINT or SIGQUIT it
 * says `stopping on SIGINT` (or SIGQUIT), waits `shutdownSeconds`, says `stopped cleanly` and
 * exits 0; SIGTERM it only notes (`ignoring SIGTERM`). `stopSignal` goes into the image's config
 * as STOPSIGNAL (as a Dockerfile's STOPSIGNAL puts it).
 */
export function stoppableImage(stopSignal: string | undefined, shutdownSeconds = 0): Promise<BuiltImage> {
  const stop = (signal: string) => `trap 'echo "stopping on ${signal}"; sleep ${shutdownSeconds}; echo "stopped cleanly"; exit 0' ${signal.slice(3)}`;
  const script = [
    stop('SIGINT'),
    stop('SIGQUIT'),
    `trap 'echo "ignoring SIGTERM"' TERM`,
    'echo "stoppable starting"',
    'httpd -f -p 8080 -h /www &',
    // A short foreground command: the shell runs a trap once it returns.
    'while :; do sleep 0.1; done',
  ].join('\n');
  return buildImage({
    layers: [busyboxLayer(), [{ type: 'dir', path: 'www/' }, { type: 'file', path: 'www/index.html', content: 'stoppable\n' }]],
    config: {
      Env: ['PATH=/bin'],
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: [script],
      ExposedPorts: { '8080/tcp': {} },
      ...(stopSignal ? { StopSignal: stopSignal } : {}),
    },
  });
}
