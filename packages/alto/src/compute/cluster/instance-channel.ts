/**
 * @module compute/cluster/instance-channel
 * The wire between a node that runs an app (its owner: queue, slots, scaling) and a node that
 * hosts one of the app's instances in its own sandbox (remote-instances.ts is the owner's side,
 * hosted-instances.ts the host's). Two kinds of connection go to the host's edge, each opened by
 * one request signed with the node link (node-link.ts) and upgraded:
 *
 *     POST /v1/internal/hosted-instance           Upgrade: alto-instance   (the control channel)
 *     POST /v1/internal/instance-tunnel?id=<id>   Upgrade: alto-tcp        (one connection to the instance's port)
 *
 * On the control channel both sides send frames: one JSON object per line, each at most
 * MAX_FRAME_BYTES (the first, which carries the start, at most MAX_START_FRAME_BYTES), read with a
 * bound before it is parsed. The start's sandbox spec holds the app's environment, secrets
 * included, so it travels sealed (AES-256-GCM with a key derived from the node-link key): a node
 * on the LAN path between two nodes reads none of it. The instance lives as long as its control
 * channel: when the channel closes, or carries nothing for CHANNEL_SILENCE_MS (the owner pings
 * every PING_INTERVAL_MS), the host stops the instance and the owner counts it exited, so a
 * node killed on either side leaves nothing running for nobody.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';

export const HOSTED_INSTANCE_PATH = '/v1/internal/hosted-instance';
export const HOSTED_INSTANCE_PROTOCOL = 'alto-instance';
export const INSTANCE_TUNNEL_PATH = '/v1/internal/instance-tunnel';
/** The longest frame after the first. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** The first frame: the start, with the sealed spec (environment and health check included). */
export const MAX_START_FRAME_BYTES = 1024 * 1024;
/** The owner pings this often; the host answers each. */
export const PING_INTERVAL_MS = 2_000;
/** A channel that carried nothing this long is taken for dead (both sides close it). */
export const CHANNEL_SILENCE_MS = 10_000;

/** The start of an instance on another node: whose, which version, which image. */
export interface HostedStart {
  projectId: string;
  /** The app's environment; absent (from a node before environments): the default one. */
  environment?: string;
  app: string;
  version: number;
  digest: string;
  image: string;
}

/** A frame the owner sends. `n` numbers a request; its answer carries `re: n`. */
export type OwnerFrame =
  | { op: 'start'; start: HostedStart; spec: string }
  | { op: 'suspend' | 'resume' | 'frozen' | 'ping'; n: number }
  | { op: 'stop'; n: number; graceMs: number };

/** A frame the host sends. */
export type HostFrame =
  | { ev: 'ready'; id: string; driver: string; exchangeLimit?: number; node: string }
  | { ev: 'failed'; status: number; message: string; logTail?: { stream: 'stdout' | 'stderr'; line: string; at: number }[] }
  | { ev: 'log'; stream: 'stdout' | 'stderr'; line: string; at: number }
  | { ev: 'health'; health: 'healthy' | 'unhealthy' }
  | { ev: 'exit'; code: number | null; reason: string }
  | { ev: 'retire'; why: string }
  | { re: number; ok: true; value?: unknown }
  | { re: number; ok: false; message: string };

/** The key that seals specs between the nodes of one cloud, from the node-link key. */
export function specKeyOf(linkKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', linkKey, Buffer.alloc(0), 'alto hosted instance spec v1', 32));
}

/** `value` as JSON, sealed: base64 of nonce, ciphertext and tag. */
export function seal(key: Buffer, value: unknown): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
}

/** What `seal` sealed; throws when it was altered or sealed with another key. */
export function unseal(key: Buffer, sealed: string): unknown {
  const bytes = Buffer.from(sealed, 'base64');
  if (bytes.length < 28) throw new Error('a sealed value is at least 28 bytes');
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
  decipher.setAuthTag(bytes.subarray(bytes.length - 16));
  const plain = Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]);
  return JSON.parse(plain.toString('utf8'));
}

/**
 * Frames over a connection: `send` writes one, `onFrame` hears each, `onClose` once when the
 * connection ends (or a frame is too long or not JSON, which closes it). A frame is read with a
 * bound: the first up to `firstLimit` bytes, the others up to MAX_FRAME_BYTES.
 */
export class FrameChannel<In, Out> {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private frames = 0;
  private closed = false;
  private readonly frameListeners: ((frame: In) => void)[] = [];
  private readonly closeListeners: ((why: string) => void)[] = [];
  /** When the last bytes arrived. */
  lastHeard = Date.now();

  constructor(
    readonly socket: Duplex,
    private readonly firstLimit = MAX_FRAME_BYTES,
  ) {
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', (error: Error) => this.close(`the connection failed: ${error.message}`));
    socket.on('close', () => this.close('the connection closed'));
    socket.on('end', () => this.close('the other side ended the connection'));
  }

  onFrame(listener: (frame: In) => void): void {
    this.frameListeners.push(listener);
  }

  onClose(listener: (why: string) => void): void {
    if (this.closed) listener('the connection closed');
    else this.closeListeners.push(listener);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(frame: Out): void {
    if (this.closed || this.socket.destroyed) return;
    this.socket.write(`${JSON.stringify(frame)}\n`);
  }

  /** Ends the connection (after what was sent) and tells the listeners why. */
  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
    // A peer that does not read what is left must not hold the socket open.
    setTimeout(() => this.socket.destroy(), 1_000).unref();
    for (const listener of this.closeListeners) listener(why);
  }

  private read(chunk: Buffer): void {
    this.lastHeard = Date.now();
    let start = 0;
    while (!this.closed) {
      const newline = chunk.indexOf(0x0a, start);
      const limit = this.frames === 0 ? this.firstLimit : MAX_FRAME_BYTES;
      if (newline < 0) {
        this.pendingBytes += chunk.length - start;
        if (this.pendingBytes > limit) return this.close(`a frame is longer than ${limit} bytes`);
        if (start < chunk.length) this.pending.push(chunk.subarray(start));
        return;
      }
      if (this.pendingBytes + newline - start > limit) return this.close(`a frame is longer than ${limit} bytes`);
      const line = this.pending.length === 0 ? chunk.subarray(start, newline) : Buffer.concat([...this.pending, chunk.subarray(start, newline)]);
      this.pending = [];
      this.pendingBytes = 0;
      start = newline + 1;
      this.frames += 1;
      let frame: In;
      try {
        frame = JSON.parse(line.toString('utf8')) as In;
      } catch {
        return this.close('a frame is not JSON');
      }
      if (typeof frame !== 'object' || frame === null) return this.close('a frame is not a JSON object');
      for (const listener of this.frameListeners) listener(frame);
    }
  }
}
