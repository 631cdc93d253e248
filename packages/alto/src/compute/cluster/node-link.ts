/**
 * @module compute/cluster/node-link
 * How the nodes of one cloud know a request comes from another of them: a node-link key derived
 * from the cloud's master key (HKDF-SHA256 with a fixed label, so the master key itself never
 * signs anything and a cloud with another master key has another link key), and an HMAC-SHA256
 * over the sending node's id, the time, a random nonce, the method, the path and the body's
 * SHA-256, carried in four headers. The receiver refuses a bad or missing signature, a time more
 * than NODE_LINK_WINDOW_MS off its own clock, and a signature it already accepted within that
 * window (a replay). `signNodeRequest` and `verifyNodeRequest` are the pair; the receiver keeps
 * one `ReplayGuard` for every request it verifies.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { errors } from '../../kit/errors.js';

/** The HKDF label of the node-link key: changing it changes every cloud's key. */
export const NODE_LINK_INFO = 'alto node link v1';
/** How far a signed request's time may be from the receiver's clock, either way. */
export const NODE_LINK_WINDOW_MS = 30_000;
/** Signatures remembered against replays, at most; past that, requests are refused until some age out. */
export const DEFAULT_REPLAY_MEMORY = 100_000;

/** The headers a signed request carries. */
export const NODE_LINK_HEADERS = {
  node: 'x-alto-node',
  timestamp: 'x-alto-node-timestamp',
  nonce: 'x-alto-node-nonce',
  signature: 'x-alto-node-signature',
} as const;

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TIMESTAMP = /^\d{1,15}$/;
const NONCE = /^[0-9a-f]{32}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
const METHOD = /^[A-Z]{1,16}$/;
/** The longest path signed or verified; longer ones are refused before any hashing. */
const MAX_PATH_LENGTH = 8_192;

/** The cloud's node-link key, from its 32-byte master key. */
export function deriveNodeLinkKey(masterKey: Buffer): Buffer {
  if (masterKey.length !== 32) throw new Error(`the master key must be 32 bytes, not ${masterKey.length}`);
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), NODE_LINK_INFO, 32));
}

/** The parts of a request that are signed. */
export interface NodeRequest {
  /** `GET`, `POST`, ... */
  method: string;
  /** The path with its query, as sent (`/v1/...?a=b`). */
  path: string;
  /** The whole body; none is the same as empty. */
  body?: Buffer | string;
}

export interface SignOptions {
  /** The sender's clock, in ms since the epoch (default now). */
  now?: number;
  /** 16 random bytes as hex (default fresh ones): tells apart two equal requests in one millisecond. */
  nonce?: string;
}

/** The headers that authenticate `request` as sent by node `nodeId` of the cloud whose link key is `key`. */
export function signNodeRequest(key: Buffer, nodeId: string, request: NodeRequest, options: SignOptions = {}): Record<string, string> {
  if (!NODE_ID.test(nodeId)) throw new Error(`a node id is 1 to 64 letters, digits, ".", "_" or "-", not "${nodeId.slice(0, 80)}"`);
  const method = request.method.toUpperCase();
  if (!METHOD.test(method)) throw new Error(`"${request.method.slice(0, 20)}" is not an HTTP method`);
  if (request.path.length > MAX_PATH_LENGTH) throw new Error(`a signed path is at most ${MAX_PATH_LENGTH} characters`);
  const timestamp = String(Math.floor(options.now ?? Date.now()));
  const nonce = options.nonce ?? randomBytes(16).toString('hex');
  if (!NONCE.test(nonce)) throw new Error('a nonce is 32 lower-case hex characters');
  return {
    [NODE_LINK_HEADERS.node]: nodeId,
    [NODE_LINK_HEADERS.timestamp]: timestamp,
    [NODE_LINK_HEADERS.nonce]: nonce,
    [NODE_LINK_HEADERS.signature]: signature(key, nodeId, timestamp, nonce, method, request.path, request.body),
  };
}

/** Request headers as Node gives them (`IncomingMessage.headers`) or as a plain record. */
export type HeaderSource = Record<string, string | string[] | undefined>;

/** What a verified request says of its sender. */
export interface VerifiedNodeRequest {
  nodeId: string;
  /** The sender's clock when it signed, in ms since the epoch. */
  signedAt: number;
}

/**
 * Checks that `request`, with these headers, was signed by a node of this cloud within the
 * window and has not been seen before; throws AltoError 401 saying what is wrong otherwise
 * (503 when the replay memory is full). `replays` is the receiver's one guard.
 */
export function verifyNodeRequest(
  key: Buffer,
  headers: HeaderSource,
  request: NodeRequest,
  replays: ReplayGuard,
  now = Date.now(),
): VerifiedNodeRequest {
  const nodeId = header(headers, NODE_LINK_HEADERS.node, NODE_ID, 'a node id');
  const timestamp = header(headers, NODE_LINK_HEADERS.timestamp, TIMESTAMP, 'milliseconds since the epoch');
  const nonce = header(headers, NODE_LINK_HEADERS.nonce, NONCE, '32 lower-case hex characters');
  const given = header(headers, NODE_LINK_HEADERS.signature, SIGNATURE, '64 lower-case hex characters');
  const method = request.method.toUpperCase();
  if (!METHOD.test(method) || request.path.length > MAX_PATH_LENGTH) throw errors.unauthorized('node request refused: its method or path cannot be signed');
  const signedAt = Number(timestamp);
  if (Math.abs(now - signedAt) > NODE_LINK_WINDOW_MS) {
    throw errors.unauthorized(
      `node request refused: signed at ${new Date(signedAt).toISOString()}, more than ${NODE_LINK_WINDOW_MS / 1000} s from this node's clock ` +
        `(${new Date(now).toISOString()}); keep the nodes' clocks in step (NTP)`,
    );
  }
  const expected = Buffer.from(signature(key, nodeId, timestamp, nonce, method, request.path, request.body), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(given, 'hex'))) {
    throw errors.unauthorized(
      `node request refused: the signature of node "${nodeId}" does not match; the request was altered, or signed with another cloud's key ` +
        '(every node of one cloud must run with the same master key)',
    );
  }
  if (!replays.remember(given, signedAt + NODE_LINK_WINDOW_MS, now)) {
    throw errors.unauthorized(`node request refused: node "${nodeId}" sent this signed request before (a replay)`);
  }
  return { nodeId, signedAt };
}

/**
 * The signatures a node accepted and still inside the window: a second request with one of them
 * is a replay. Bounded: when `maxEntries` are remembered and none has aged out, requests are
 * refused (503) rather than remembered less.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();

  constructor(private readonly maxEntries = DEFAULT_REPLAY_MEMORY) {}

  /** Remembers `signature` until `until`; false when it is remembered already. Throws 503 when full. */
  remember(signature: string, until: number, now: number): boolean {
    const known = this.seen.get(signature);
    if (known !== undefined && known >= now) return false;
    if (this.seen.size >= this.maxEntries) this.forgetExpired(now);
    if (this.seen.size >= this.maxEntries) {
      throw errors
        .unavailable(`too many node requests within ${NODE_LINK_WINDOW_MS / 1000} s to guard against replays; retry shortly`)
        .withHeaders({ 'retry-after': '1' });
    }
    this.seen.set(signature, until);
    return true;
  }

  /** How many signatures are remembered now. */
  get size(): number {
    return this.seen.size;
  }

  private forgetExpired(now: number): void {
    for (const [signature, until] of this.seen) if (until < now) this.seen.delete(signature);
  }
}

function header(headers: HeaderSource, name: string, format: RegExp, what: string): string {
  const value = headers[name];
  if (value === undefined) throw errors.unauthorized(`node request refused: no ${name} header; node requests are signed (see signNodeRequest)`);
  if (typeof value !== 'string' || !format.test(value)) throw errors.unauthorized(`node request refused: ${name} must be ${what}`);
  return value;
}

function signature(key: Buffer, nodeId: string, timestamp: string, nonce: string, method: string, path: string, body: Buffer | string | undefined): string {
  const bodyDigest = createHash('sha256')
    .update(body ?? '')
    .digest('hex');
  // JSON of the parts: unambiguous however they are spelled.
  const signed = JSON.stringify(['alto.node-link.v1', nodeId, timestamp, nonce, method, path, bodyDigest]);
  return createHmac('sha256', key).update(signed).digest('hex');
}
