/**
 * @module compute/cluster/hand-off
 * One node asks another to take one of its apps (drain.ts), over the node link (node-link.ts):
 * `POST /internal/nodes/adopt` on the receiver's edge, signed by the sender, with the app's id
 * and the sender's node id. The receiver refuses what no node of this cloud signed (401: no,
 * a wrong or a replayed signature), what a node that is not live, or not the app's node, sent
 * (403), and a body past MAX_BODY_BYTES (413). It moves the app to itself in the store, starts it
 * and answers 200 only once its instances are ready; when they never are, it moves the app back
 * and answers the error, so the sender keeps serving it.
 *
 * The route lives outside `/v1/` (the API's, where keys authenticate calls): it is the nodes
 * service's plain HTTP route, and only nodes call it.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { z } from 'zod';
import { errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { Platform } from '../../platform/platform.js';
import type { HttpRoute } from '../../platform/service.js';
import { signNodeRequest, verifyNodeRequest, type ReplayGuard } from './node-link.js';
import { connectToPeer, type PeerAddress } from './peers.js';

export const HAND_OFF_PREFIX = '/internal/nodes/';
export const HAND_OFF_PATH = `${HAND_OFF_PREFIX}adopt`;
/** A hand-off names an app and a node: anything longer is not one. */
export const MAX_BODY_BYTES = 4_096;
/** How long the sender waits for the receiver's instances to be ready (a pull and a boot). */
export const HAND_OFF_TIMEOUT_MS = 120_000;

const HandOff = z.object({
  app: z.string().min(1).max(64).regex(/^[A-Za-z0-9._-]+$/),
  from: z.string().min(1).max(64),
});
export type HandOffRequest = z.infer<typeof HandOff>;

/** What the receiving node does with a verified hand-off. */
export interface HandOffReceiver {
  /** The cloud's node-link key. */
  key: Buffer;
  /** This node's one guard against replays. */
  replays: ReplayGuard;
  /** Whether a node of this id is live in this node's view of the cloud. */
  isLiveNode(id: string): boolean;
  /** Moves the app from node `from` to this one and starts it; resolves once it is ready here. */
  receive(appId: string, from: string): Promise<void>;
  log: Logger;
}

/** The receiver of each platform that joined a cloud (set by joinCluster). */
const receivers = new WeakMap<Platform, HandOffReceiver>();

export function registerHandOffReceiver(platform: Platform, receiver: HandOffReceiver): () => void {
  receivers.set(platform, receiver);
  return () => {
    if (receivers.get(platform) === receiver) receivers.delete(platform);
  };
}

/** The nodes service's route for hand-offs. */
export function handOffRoute(): HttpRoute {
  return {
    prefix: HAND_OFF_PREFIX,
    methods: ['POST'],
    description: 'Another node of this cloud hands over an app (signed by the node link); not for clients.',
    handle: (request, response, _url, platform) => handleHandOff(request, response, receivers.get(platform)),
  };
}

/** Answers one hand-off request; exported for tests with a receiver of their own. */
export async function handleHandOff(request: IncomingMessage, response: ServerResponse, receiver: HandOffReceiver | undefined): Promise<void> {
  try {
    if (request.url !== HAND_OFF_PATH || request.method !== 'POST') throw errors.notFound(`nothing at ${(request.url ?? '').slice(0, 100)}`);
    if (!receiver) throw errors.unavailable('this node has not joined a cloud yet').withHeaders({ 'retry-after': '1' });
    const body = await readBody(request, MAX_BODY_BYTES);
    const verified = verifyNodeRequest(receiver.key, request.headers, { method: 'POST', path: HAND_OFF_PATH, body }, receiver.replays);
    if (!receiver.isLiveNode(verified.nodeId)) throw errors.forbidden(`node "${verified.nodeId}" is not a live node of this cloud`);
    let parsed: HandOffRequest;
    try {
      parsed = HandOff.parse(JSON.parse(body.toString('utf8')));
    } catch {
      throw errors.badRequest('a hand-off is JSON {"app": "<app id>", "from": "<node id>"}');
    }
    if (parsed.from !== verified.nodeId) throw errors.forbidden(`node "${verified.nodeId}" may hand over only its own apps, not node "${parsed.from}"'s`);
    await receiver.receive(parsed.app, parsed.from);
    send(response, 200, { app: parsed.app, ready: true });
  } catch (error) {
    const failure = isAltoError(error) ? error : errors.internal();
    if (!isAltoError(error)) receiver?.log.error({ err: error }, 'taking an app from another node failed');
    // The rest of a refused body is not read: the connection closes after the answer.
    send(response, failure.status, failure.toBody(), { ...failure.headers, ...(request.complete ? {} : { connection: 'close' }) });
  }
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload), ...headers });
  response.end(payload);
}

/** The whole body, refused with 413 past `limit` bytes (by its length header, or as it arrives). */
function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > limit) return Promise.reject(errors.payloadTooLarge(`a hand-off body is at most ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        request.off('data', onData);
        request.pause();
        reject(errors.payloadTooLarge(`a hand-off body is at most ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    request.on('data', onData);
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.once('error', reject);
  });
}

/** The receiver's answer when it did not take the app; `status` 0 when no answer came. */
export class HandOffRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Asks `peer` to take app `appId` from node `self`; resolves once its instances are ready there.
 * Rejects with HandOffRefused: the receiver's status and detail, or status 0 when the call
 * itself failed (then the store says whether it took the app).
 */
export function requestHandOff(peer: PeerAddress, key: Buffer, self: string, appId: string, timeoutMs = HAND_OFF_TIMEOUT_MS): Promise<void> {
  const body = JSON.stringify({ app: appId, from: self } satisfies HandOffRequest);
  const headers = signNodeRequest(key, self, { method: 'POST', path: HAND_OFF_PATH, body });
  return new Promise((resolve, reject) => {
    const call = httpRequest(
      {
        host: peer.host,
        port: peer.port,
        path: HAND_OFF_PATH,
        method: 'POST',
        // One connection for this call, made as every connection to a peer is (TLS for an https: peer).
        createConnection: (_options, done) =>
          void connectToPeer(peer).then(
            (socket) => done(null, socket),
            (error: Error) => done(error, undefined as unknown as Duplex),
          ),
        headers: { ...headers, host: `${peer.host}:${peer.port}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          if (response.statusCode === 200) return resolve();
          let detail = Buffer.concat(chunks).toString('utf8').slice(0, 2_000);
          try {
            detail = (JSON.parse(detail) as { detail?: string }).detail ?? detail;
          } catch {
            // not JSON: the text as it came
          }
          reject(new HandOffRefused(response.statusCode ?? 0, `node ${peer.name} did not take the app (${response.statusCode}): ${detail}`));
        });
        response.on('error', (error) => reject(new HandOffRefused(0, `node ${peer.name}'s answer broke off: ${error.message}`)));
      },
    );
    call.setTimeout(timeoutMs, () => call.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    call.on('error', (error) => reject(new HandOffRefused(0, `asking node ${peer.name} to take the app failed: ${error.message}`)));
    call.end(body);
  });
}
