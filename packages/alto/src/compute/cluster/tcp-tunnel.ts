/**
 * @module compute/cluster/tcp-tunnel
 * TCP apps across nodes: a connection to a TCP app's port on a node that does not run the app is
 * carried to the node that does, through a tunnel on that node's edge. The relaying node opens a
 * connection to the peer's edge and sends one HTTP/1.1 request, signed with the node link
 * (node-link.ts) and naming the app in its path:
 *
 *     POST /v1/internal/tcp-tunnel?project=<project name>&app=<app name> HTTP/1.1
 *     Connection: Upgrade
 *     Upgrade: alto-tcp
 *
 * The receiving node checks the signature and that the sender is a live node, takes an instance
 * of the app from its own apps only (a tunnelled connection is never relayed again, so two nodes
 * with different views of the owner cannot pass it back and forth), connects to it, answers
 * `101 Switching Protocols`, and from then on the bytes pass both ways untouched. Anything else is
 * answered with the status and JSON error body of the API, and the connection closes.
 *
 * The instance is held (counted, kept awake) for as long as the tunnel is open, as for a TCP
 * connection made to the node directly.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { Platform } from '../../platform/platform.js';
import type { AppAddress, AppResolver, ProxyTarget } from '../apps/gateway.js';
import { signNodeRequest, verifyNodeRequest, type ReplayGuard } from './node-link.js';
import { connectToPeer, type PeerAddress } from './peers.js';

export const TCP_TUNNEL_PATH = '/v1/internal/tcp-tunnel';
/** The `Upgrade` token of a tunnel. */
export const TCP_TUNNEL_PROTOCOL = 'alto-tcp';
/** The receiving node's answer head is read up to this many bytes. */
const MAX_ANSWER_HEAD_BYTES = 8 * 1024;
/** Long enough for the receiving node to wake or start an instance (its gateway waits up to 10 s). */
const DEFAULT_TUNNEL_TIMEOUT_MS = 15_000;
/** Project and app names are short; a longer path is refused before it is parsed. */
const MAX_TUNNEL_PATH = 512;

/** The path of a tunnel to the app at `address`. */
export function tunnelPath(address: AppAddress): string {
  return `${TCP_TUNNEL_PATH}?${new URLSearchParams({ project: address.project, app: address.app })}`;
}

/** Why a tunnel could not be opened: the receiving node's status (0 when it gave none) and words. */
export class TunnelRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Opens a tunnel to the app at `address` through `peer`'s edge: resolves with the connection,
 * carrying the app's bytes from then on; rejects with TunnelRefused.
 */
export function openTcpTunnel(peer: PeerAddress, key: Buffer, self: string, address: AppAddress, timeoutMs = DEFAULT_TUNNEL_TIMEOUT_MS): Promise<Socket> {
  return openSignedUpgrade(peer, key, self, tunnelPath(address), TCP_TUNNEL_PROTOCOL, timeoutMs);
}

/**
 * Sends `POST path` to `peer`'s edge, signed by this node and asking to upgrade to `protocol`;
 * resolves with the connection once the peer answered 101 (its bytes from then on are the
 * protocol's), rejects with TunnelRefused saying what the peer answered otherwise. Tunnels to TCP
 * apps, and to and about instances hosted for another node (hosted-instances.ts), open this way.
 */
export async function openSignedUpgrade(peer: PeerAddress, key: Buffer, self: string, path: string, protocol: string, timeoutMs = DEFAULT_TUNNEL_TIMEOUT_MS): Promise<Socket> {
  const signed = signNodeRequest(key, self, { method: 'POST', path });
  const socket = await connectToPeer(peer).catch((error: Error) => {
    throw new TunnelRefused(0, `node ${peer.name} did not take a connection: ${error.message}`);
  });
  const head =
    `POST ${path} HTTP/1.1\r\nhost: ${peer.host}:${peer.port}\r\nconnection: Upgrade\r\nupgrade: ${protocol}\r\ncontent-length: 0\r\n` +
    Object.entries(signed)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('') +
    '\r\n';
  return new Promise<Socket>((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    const fail = (error: TunnelRefused) => {
      cleanUp();
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new TunnelRefused(0, `node ${peer.name} did not open the tunnel within ${timeoutMs / 1000} s`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) {
        if (received.length > MAX_ANSWER_HEAD_BYTES) fail(new TunnelRefused(0, `node ${peer.name}'s answer head is longer than ${MAX_ANSWER_HEAD_BYTES} bytes`));
        return;
      }
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(received.subarray(0, Math.min(end, 64)).toString('latin1'))?.[1] ?? 0);
      if (status !== 101) {
        // The rest is the error's JSON body (closed after): wait for it briefly, then say what it said.
        let body: Buffer = received.subarray(end + 4);
        const done = () => fail(new TunnelRefused(status, `node ${peer.name} refused the tunnel (${status || 'not HTTP'}): ${detailOf(body)}`));
        socket.removeListener('data', onData);
        socket.on('data', (more: Buffer) => {
          if (body.length < 4096) body = Buffer.concat([body, more]);
        });
        socket.once('end', done);
        socket.once('close', done);
        return;
      }
      cleanUp();
      const rest = received.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    const onError = (error: Error) => fail(new TunnelRefused(0, `the connection to node ${peer.name} failed: ${error.message}`));
    const onClose = () => fail(new TunnelRefused(0, `node ${peer.name} closed the connection before opening the tunnel`));
    const cleanUp = () => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.write(head, 'latin1');
  });
}

function detailOf(body: Buffer): string {
  const text = body.toString('utf8').slice(0, 2_000);
  try {
    return (JSON.parse(text) as { detail?: string }).detail ?? text;
  } catch {
    return text || 'no reason given';
  }
}

/** What the receiving side needs: the link key, its replay guard, and this node's own apps. */
export interface TunnelReceiver {
  key: Buffer;
  replays: ReplayGuard;
  /** This node's apps only (never the cluster's routing: a tunnel is not relayed again). */
  local: AppResolver;
  isLiveNode(id: string): boolean;
  log: Logger;
}

const receivers = new WeakMap<Platform, TunnelReceiver>();

export function registerTunnelReceiver(platform: Platform, receiver: TunnelReceiver): () => void {
  receivers.set(platform, receiver);
  return () => {
    if (receivers.get(platform) === receiver) receivers.delete(platform);
  };
}

/** Whether an upgrade request asks for a tunnel (then `acceptTcpTunnel` answers it). */
export function isTunnelRequest(request: IncomingMessage): boolean {
  return (request.url ?? '').startsWith(`${TCP_TUNNEL_PATH}?`) && (request.headers.upgrade ?? '').toLowerCase() === TCP_TUNNEL_PROTOCOL;
}

/** Answers a tunnel request on the edge's upgrade path; the socket is this function's from now on. */
export async function acceptTcpTunnel(platform: Platform, request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const receiver = receivers.get(platform);
  let target: ProxyTarget | undefined;
  try {
    if (!receiver) throw errors.unavailable('this node has not joined a cloud yet').withHeaders({ 'retry-after': '1' });
    const path = request.url ?? '';
    if (request.method !== 'POST' || path.length > MAX_TUNNEL_PATH) throw errors.badRequest('a tunnel is POST /v1/internal/tcp-tunnel?project=...&app=...');
    const verified = verifyNodeRequest(receiver.key, request.headers, { method: 'POST', path }, receiver.replays);
    if (!receiver.isLiveNode(verified.nodeId)) throw errors.forbidden(`node "${verified.nodeId}" is not a live node of this cloud`);
    const query = new URL(path, 'http://alto.local').searchParams;
    const project = query.get('project');
    const app = query.get('app');
    if (!project || !app) throw errors.badRequest('a tunnel names its app: ?project=<project name>&app=<app name>');
    target = await receiver.local.acquire({ project, app }, 'tcp', true);
    const upstream = await target.connect();
    const release = once(target.release);
    upstream.on('error', () => upstream.destroy());
    if (socket.destroyed) {
      upstream.destroy();
      return release();
    }
    (socket as Socket).setNoDelay?.(true);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${TCP_TUNNEL_PROTOCOL}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.once('close', () => {
      socket.destroy();
      release();
    });
    socket.once('close', () => {
      upstream.destroy();
      release();
    });
    socket.pipe(upstream).pipe(socket);
  } catch (error) {
    target?.release();
    if (!isAltoError(error)) receiver?.log.warn({ err: error }, 'a tunnel to a TCP app failed');
    refuseUpgrade(socket, isAltoError(error) ? error : errors.unavailable(`the app's instance refused the connection: ${(error as Error).message}`));
  }
}

/** Answers a refused upgrade with the API's status and JSON error; the connection closes after it. */
export function refuseUpgrade(socket: Duplex, failure: AltoError): void {
  const body = JSON.stringify(failure.toBody());
  socket.end(`HTTP/1.1 ${failure.status} ${failure.code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
