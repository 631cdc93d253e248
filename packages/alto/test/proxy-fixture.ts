/**
 * What the edge's proxy tests share: a resolver that maps app names to local ports and counts
 * every release per acquire, and small helpers for local servers.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { errors } from '../src/kit/errors.js';
import { connectOnce } from '../src/compute/sandbox/connect.js';
import type { AppAddress, AppResolver, ProxyTarget } from '../src/edge/proxy.js';

/** Polls until `condition` holds, failing after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A resolver that maps app names to local ports and counts every release per acquire. */
export class TestResolver implements AppResolver {
  /** `via`: the target stands for another node's edge (the proxy sends `x-alto-via`). */
  readonly targets = new Map<string, { host: string; port: number; via?: string }>();
  readonly failures = new Map<string, () => Error>();
  /** One entry per acquire: how many times its release was called. */
  readonly releases: number[] = [];
  readonly kinds: string[] = [];
  /** One entry per acquire: whether the proxy said the request was relayed by another node. */
  readonly relayed: boolean[] = [];

  async acquire(address: AppAddress, kind: 'http' | 'tcp', relayed = false): Promise<ProxyTarget> {
    this.kinds.push(`${address.app}.${address.project}:${kind}`);
    this.relayed.push(relayed);
    const failure = this.failures.get(address.app);
    if (failure) throw failure();
    const target = this.targets.get(address.app);
    if (!target) throw errors.notFound(`no app "${address.app}" in project "${address.project}"`);
    const index = this.releases.push(0) - 1;
    return { ...target, connect: () => connectOnce(target.host, target.port), release: () => void this.releases[index]++ };
  }

  get acquired(): number {
    return this.releases.length;
  }

  /** Waits until every acquire was released, then checks none was released twice. */
  async allReleasedOnce(): Promise<void> {
    await waitFor(() => this.releases.every((count) => count >= 1), 'every acquired target to be released');
    assert.deepEqual(this.releases, this.releases.map(() => 1), 'each target released exactly once');
  }
}

export function listen(server: Server | TcpServer): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

export function close(server: Server | TcpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createTcpServer();
  const port = await listen(server);
  await close(server);
  return port;
}

