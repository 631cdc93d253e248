/**
 * Pebble, Let's Encrypt's ACME test server, and pebble-challtestsrv as its DNS (every name
 * resolves to 127.0.0.1), started by a test on free loopback ports and stopped by PID. Pebble
 * validates HTTP-01 and TLS-ALPN-01 on the ports the test names (Alto's), serves its directory
 * over HTTPS with a certificate from the test's own authority (which Alto trusts through
 * NODE_EXTRA_CA_CERTS), and issues from a root made at its start (`root()`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { waitForAsync } from './harness.js';
import type { TestAuthority } from './tls-fixture.js';

export interface Pebble {
  directoryUrl: string;
  /** pebble-challtestsrv's DNS, `127.0.0.1:port` (for ALTO_DNS_SERVER). */
  dnsServer: string;
  /** Makes `host` resolve to 127.0.0.1 (when not every name does). */
  addAddress(host: string): Promise<void>;
  /** Pebble's issuing root, PEM (made new at each start). */
  root(): Promise<string>;
  output(): string;
  stop(): Promise<void>;
}

export interface PebbleOptions {
  authority: TestAuthority;
  /** Where pebble sends HTTP-01 validations (Alto's plain port). */
  httpPort: number;
  /** Where pebble sends TLS-ALPN-01 validations (Alto's HTTPS port). */
  tlsPort: number;
  /** Lifetime of the certificates it issues (default pebble's, five years). */
  validitySeconds?: number;
  /** false: only the names given to `addAddress` resolve (default: every name, to 127.0.0.1). */
  resolveAll?: boolean;
}

/** A loopback port nothing listens on now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function getText(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(url, { ca, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.setTimeout(5_000, () => request.destroy(new Error('timed out')));
    request.end();
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const { authority } = options;
  const served = authority.issue(['localhost', '127.0.0.1'], `pebble-${options.httpPort}`);
  const [listenPort, managementPort, dnsPort, dnsManagementPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const config = join(authority.dir, `pebble-${options.httpPort}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listenPort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: served.certificatePath,
        privateKey: served.keyPath,
        httpPort: options.httpPort,
        tlsPort: options.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
      },
    }),
  );
  let output = '';
  const collect = (child: ChildProcess) => {
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  };
  const dns = spawn(
    'pebble-challtestsrv',
    ['-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${dnsManagementPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv4', options.resolveAll === false ? '' : '127.0.0.1', '-defaultIPv6', ''],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  collect(dns);
  const pebble = spawn('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`, '-strict=false'], {
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  collect(pebble);
  const stop = async () => {
    await stopChild(pebble);
    await stopChild(dns);
  };
  const directoryUrl = `https://127.0.0.1:${listenPort}/dir`;
  try {
    await waitForAsync(
      async () => {
        if (pebble.exitCode !== null || dns.exitCode !== null) throw new Error(`pebble exited:\n${output}`);
        return (await getText(directoryUrl, authority.root).catch(() => ({ status: 0 }))).status === 200;
      },
      'pebble to answer',
      20_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    directoryUrl,
    dnsServer: `127.0.0.1:${dnsPort}`,
    async addAddress(host) {
      const response = await fetch(`http://127.0.0.1:${dnsManagementPort}/add-a`, { method: 'POST', body: JSON.stringify({ host: `${host}.`, addresses: ['127.0.0.1'] }) });
      if (!response.ok) throw new Error(`challtestsrv add-a: ${response.status} ${await response.text()}`);
    },
    async root() {
      const response = await getText(`https://127.0.0.1:${managementPort}/roots/0`, authority.root);
      if (response.status !== 200) throw new Error(`pebble's root: ${response.status}`);
      return response.body;
    },
    output: () => output,
    stop,
  };
}
