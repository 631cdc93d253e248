/**
 * @module compute/cluster/remote-instances
 * The owner's side of instances placed on other nodes (hosted-instances.ts is the host's side,
 * instance-channel.ts the wire). When this node runs as many instances as it may
 * (ALTO_MAX_INSTANCES), a start of one of its apps that keeps nothing on this node's disk (no
 * volumes, no links) goes to another node (apps/placement.ts asks `PeerPlacer.start`). The node
 * is chosen by the power of two choices: two random live nodes that are not draining and have
 * room by their last heartbeat, the one with more room (then more free memory) first; the others
 * follow in random order, each tried when the one before refused (it filled up meanwhile, or
 * began draining: a host checks its own cap at the start, so two owners never overfill it).
 *
 * The started instance is a `RemoteInstance`: an `Instance` like a local one to the slot that
 * holds it, so the app's queue, scaling, idle suspend and metering stay on this node (the queue
 * is per app, not per node). Its connections are instance tunnels through the host's edge; its
 * suspend, resume and stop are asks on its channel; its lines and exit come back on it. A host
 * that dies or goes silent ends the channel, and the instance counts as exited: its slot starts
 * another. Snapshots stay on their node: an instance on another node is never snapshotted.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { errors, type AltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { ListedNode } from '../../store/nodes/port.js';
import type { RemotePlacer } from '../apps/placement.js';
import { BoundedLog, followLog } from '../sandbox/log-capture.js';
import { SandboxStartError, type Instance, type InstanceExit, type LogLine, type SandboxSpec } from '../sandbox/index.js';
import type { InstanceState, SandboxDriverName } from '../sandbox/port.js';
import {
  CHANNEL_SILENCE_MS,
  FrameChannel,
  HOSTED_INSTANCE_PATH,
  HOSTED_INSTANCE_PROTOCOL,
  INSTANCE_TUNNEL_PATH,
  MAX_FRAME_BYTES,
  PING_INTERVAL_MS,
  seal,
  specKeyOf,
  type HostFrame,
  type HostedStart,
  type OwnerFrame,
} from './instance-channel.js';
import type { PeerAddress, PeerView } from './peers.js';
import { openSignedUpgrade, TCP_TUNNEL_PROTOCOL, TunnelRefused } from './tcp-tunnel.js';

/** How many random candidates a placement compares (the power of K choices). */
const CHOICES = 2;
/** How long a host has to start the instance (pull, unpack, boot) before the start is given up. */
const START_TIMEOUT_MS = 120_000;
/** How long an ask (suspend, resume, stop...) waits for its answer. */
const ASK_TIMEOUT_MS = 60_000;
/** Lines a remote instance keeps for `logs()` (the app's log keeps its own). */
const KEPT_LINES = 500;

export interface PeerPlacerOptions {
  /** The node-link key (node-link.ts). */
  key: Buffer;
  self: { id: string; name: string };
  peers: PeerView;
  log: Logger;
}

/** Places starts on other nodes of the cloud (see the module's comment). */
export class PeerPlacer implements RemotePlacer {
  private readonly specKey: Buffer;

  constructor(private readonly options: PeerPlacerOptions) {
    this.specKey = specKeyOf(options.key);
  }

  /** Live nodes that take instances and had room at their last heartbeat, in the order to try them. */
  candidates(random = Math.random): ListedNode[] {
    const open = this.options.peers.liveNodes().filter((node) => node.id !== this.options.self.id && !node.draining && roomOf(node) > 0);
    for (let i = open.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [open[i], open[j]] = [open[j], open[i]];
    }
    const chosen = open.slice(0, CHOICES).sort((a, b) => roomOf(b) - roomOf(a) || b.capacity.memoryFreeMiB - a.capacity.memoryFreeMiB);
    return [...chosen, ...open.slice(CHOICES)];
  }

  async start(start: HostedStart, spec: SandboxSpec): Promise<Instance | undefined> {
    const sealed = seal(this.specKey, spec);
    for (const node of this.candidates()) {
      const peer = this.options.peers.addressOf(node.id);
      if (!peer) continue;
      try {
        return await RemoteInstance.open(peer, this.options, { op: 'start', start, spec: sealed }, spec.port);
      } catch (error) {
        // The node filled up, began draining or cannot be reached: the next one. A start the app
        // itself failed (it exited, or never listened) fails the same anywhere: the slot hears it.
        if (error instanceof SandboxStartError) throw error;
        if (error instanceof HostRefused && error.status !== 503) throw refusal(error);
        this.options.log.warn({ node: node.name, app: start.app, err: error }, `node ${node.name} did not take an instance of app "${start.app}"; trying another`);
      }
    }
    return undefined;
  }
}

/** Instances a node may still take by its last heartbeat (a large number without a cap). */
function roomOf(node: ListedNode): number {
  const cap = node.capacity.maxInstances ?? 0;
  return cap > 0 ? cap - (node.capacity.sandboxes ?? 0) : Number.MAX_SAFE_INTEGER;
}

/** A host's refusal that no other node would answer otherwise, as the API's error of its status. */
function refusal(error: HostRefused): AltoError {
  if (error.status === 404) return errors.notFound(error.message);
  if (error.status === 409) return errors.conflict(error.message);
  if (error.status >= 400 && error.status < 500) return errors.badRequest(error.message);
  return errors.unavailable(error.message);
}

/** A host's refusal of a start, with its status. */
class HostRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** An instance another node runs for this one, driven over its channel. */
export class RemoteInstance implements Instance {
  readonly events = new EventEmitter();
  readonly exited: Promise<InstanceExit>;
  state: InstanceState = 'running';
  health: 'healthy' | 'unhealthy' | undefined;
  private exitInfo: InstanceExit | undefined;
  private resolveExit!: (exit: InstanceExit) => void;
  private readonly lines = new BoundedLog<LogLine>(KEPT_LINES, 256 * 1024);
  private asked = 0;
  private readonly answers = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();
  private readonly pinger: NodeJS.Timeout;

  /** Opens a channel to `peer`, sends the start and resolves once the instance is ready there. */
  static async open(peer: PeerAddress, options: PeerPlacerOptions, startFrame: OwnerFrame, port: number): Promise<RemoteInstance> {
    const socket = await openSignedUpgrade(peer, options.key, options.self.id, HOSTED_INSTANCE_PATH, HOSTED_INSTANCE_PROTOCOL).catch((error: Error) => {
      throw error instanceof TunnelRefused && error.status ? new HostRefused(error.status, error.message) : error;
    });
    socket.setNoDelay(true);
    const channel = new FrameChannel<HostFrame, OwnerFrame>(socket, MAX_FRAME_BYTES);
    const lines: LogLine[] = [];
    const ready = await new Promise<Extract<HostFrame, { ev: 'ready' }>>((resolve, reject) => {
      const timer = setTimeout(() => channel.close('the start took too long'), START_TIMEOUT_MS);
      channel.onFrame((frame) => {
        if ('ev' in frame && frame.ev === 'ready') {
          clearTimeout(timer);
          resolve(frame);
        } else if ('ev' in frame && frame.ev === 'log') {
          if (lines.length < KEPT_LINES) lines.push({ stream: frame.stream === 'stderr' ? 'stderr' : 'stdout', line: String(frame.line), at: Number(frame.at) });
        } else if ('ev' in frame && frame.ev === 'failed') {
          clearTimeout(timer);
          const message = `node ${peer.name}: ${String(frame.message).slice(0, 4_000)}`;
          reject(frame.status === 500 && frame.logTail ? new SandboxStartError(message, '', frame.logTail.slice(-50)) : new HostRefused(frame.status, message));
        }
      });
      channel.onClose((why) => {
        clearTimeout(timer);
        reject(new HostRefused(503, `node ${peer.name} ended the start: ${why}`));
      });
      channel.send(startFrame);
    });
    return new RemoteInstance(channel, peer, options, ready, port, lines);
  }

  private constructor(
    private readonly channel: FrameChannel<HostFrame, OwnerFrame>,
    private readonly peer: PeerAddress,
    private readonly options: PeerPlacerOptions,
    ready: Extract<HostFrame, { ev: 'ready' }>,
    readonly port: number,
    earlier: LogLine[],
  ) {
    this.id = String(ready.id);
    this.driver = ready.driver === 'microvm' ? 'microvm' : 'process';
    this.node = String(ready.node);
    if (typeof ready.exchangeLimit === 'number') this.exchangeLimit = ready.exchangeLimit;
    // A name no DNS resolves, unique per instance: the edge pools its connections by host and port.
    this.host = `${this.id}.${peer.name}.instance`;
    for (const line of earlier) this.lines.push(line);
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    channel.onFrame((frame) => this.heard(frame));
    channel.onClose((why) => this.ended({ code: null, reason: `its node, ${peer.name}, is gone (${why})` }));
    this.pinger = setInterval(() => {
      if (Date.now() - channel.lastHeard > CHANNEL_SILENCE_MS) return channel.close(`node ${peer.name} answered nothing for ${CHANNEL_SILENCE_MS / 1000} s`);
      this.ask({ op: 'ping', n: 0 }).catch(() => undefined);
    }, PING_INTERVAL_MS);
    this.pinger.unref();
  }

  readonly id: string;
  readonly driver: SandboxDriverName;
  readonly host: string;
  /** The node that runs it. */
  readonly node: string;
  readonly exchangeLimit?: number;

  private heard(frame: HostFrame): void {
    if ('re' in frame) {
      const waiting = this.answers.get(frame.re);
      if (!waiting) return;
      this.answers.delete(frame.re);
      clearTimeout(waiting.timer);
      if (frame.ok) waiting.resolve(frame.value);
      else waiting.reject(new Error(`node ${this.peer.name}: ${String(frame.message).slice(0, 2_000)}`));
      return;
    }
    if (frame.ev === 'log') {
      const line: LogLine = { stream: frame.stream === 'stderr' ? 'stderr' : 'stdout', line: String(frame.line), at: Number(frame.at) };
      this.lines.push(line);
      this.events.emit('log', line);
    } else if (frame.ev === 'health') {
      this.health = frame.health === 'unhealthy' ? 'unhealthy' : 'healthy';
    } else if (frame.ev === 'exit') {
      this.ended({ code: typeof frame.code === 'number' ? frame.code : null, reason: String(frame.reason) });
    } else if (frame.ev === 'retire') {
      this.options.log.info({ instance: this.id, node: this.peer.name }, `node ${this.peer.name} asks for instance ${this.id} to move: ${String(frame.why)}`);
      this.events.emit('retire', String(frame.why));
    }
  }

  private ended(exit: InstanceExit): void {
    if (this.exitInfo) return;
    this.exitInfo = exit;
    this.state = 'exited';
    clearInterval(this.pinger);
    for (const waiting of this.answers.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(new Error(`instance ${this.id} on node ${this.peer.name} ended: ${exit.reason}`));
    }
    this.answers.clear();
    this.channel.close('the instance exited');
    this.events.emit('exit', exit);
    this.resolveExit(exit);
  }

  private ask(frame: OwnerFrame): Promise<unknown> {
    if (this.exitInfo) return Promise.reject(new Error(`instance ${this.id} on node ${this.peer.name} has ended`));
    const n = ++this.asked;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.answers.delete(n);
        reject(new Error(`node ${this.peer.name} did not answer within ${ASK_TIMEOUT_MS / 1000} s`));
      }, ASK_TIMEOUT_MS);
      this.answers.set(n, { resolve, reject, timer });
      this.channel.send({ ...frame, n } as OwnerFrame);
    });
  }

  connect(): Promise<Socket> {
    return openSignedUpgrade(this.peer, this.options.key, this.options.self.id, `${INSTANCE_TUNNEL_PATH}?id=${encodeURIComponent(this.id)}`, TCP_TUNNEL_PROTOCOL);
  }

  logs(options: { follow?: boolean } = {}): AsyncIterable<LogLine> {
    return followLog(this.lines.newest(KEPT_LINES), this.events, () => this.exitInfo !== undefined, options.follow);
  }

  async stop(graceMs?: number): Promise<InstanceExit> {
    if (this.exitInfo) return this.exitInfo;
    this.state = 'stopping';
    await this.ask({ op: 'stop', n: 0, graceMs: graceMs ?? 5_000 }).catch(() => this.channel.close('the stop was not answered'));
    return this.exited;
  }

  async suspend(): Promise<void> {
    await this.ask({ op: 'suspend', n: 0 });
    if (!this.exitInfo) this.state = 'suspended';
  }

  async resume(): Promise<void> {
    await this.ask({ op: 'resume', n: 0 });
    if (!this.exitInfo) this.state = 'running';
  }

  async isFrozen(): Promise<boolean> {
    return (await this.ask({ op: 'frozen', n: 0 })) === true;
  }

  snapshot(): Promise<void> {
    return Promise.reject(errors.conflict(`instance ${this.id} runs on node ${this.peer.name}: snapshots stay on the app's own node`));
  }

  /** No new exchanges go to it (its node drains); those in flight finish. */
  retiring(): void {
    if (this.state === 'running') this.state = 'stopping';
  }
}
