/**
 * @module compute/cluster/hosted-instances
 * The host's side of an instance placed on this node by the node that runs its app (the owner;
 * remote-instances.ts is its side, instance-channel.ts the wire). The owner opens a control
 * channel and sends the start; this node checks that the sender is a live node of the cloud and
 * the app's owner in the store, that it is not draining, and then starts the instance in its own
 * sandbox within its own cap (the app manager pulls the image and unpacks it here). From then on
 * it streams the instance's log lines, health and exit to the owner, and does what the owner asks:
 * suspend, resume, stop. Connections to the instance's port come as instance tunnels, each
 * checked to come from the instance's owner. The instance lives as long as its channel: a closed
 * or silent channel (the owner is gone) stops it. A draining node asks each owner to move its
 * instances elsewhere (`retireAll`); the owner starts a replacement, drains this one and stops it.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { Platform } from '../../platform/platform.js';
import type { AppStore } from '../../store/apps/port.js';
import { isSandboxStartError, type Instance, type SandboxSpec } from '../sandbox/index.js';
import {
  CHANNEL_SILENCE_MS,
  FrameChannel,
  HOSTED_INSTANCE_PATH,
  HOSTED_INSTANCE_PROTOCOL,
  INSTANCE_TUNNEL_PATH,
  MAX_START_FRAME_BYTES,
  PING_INTERVAL_MS,
  specKeyOf,
  unseal,
  type HostFrame,
  type HostedStart,
  type OwnerFrame,
} from './instance-channel.js';
import { verifyNodeRequest, type ReplayGuard } from './node-link.js';
import { refuseUpgrade, TCP_TUNNEL_PROTOCOL } from './tcp-tunnel.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';

/** How long the owner has to send the start once the channel is open. */
const START_FRAME_WAIT_MS = 10_000;
/** Log lines wait in the channel's buffer up to this; past it they are dropped and counted. */
const MAX_BUFFERED_LOG_BYTES = 1024 * 1024;
/** How often an instance's health is looked at, to tell the owner when it changes. */
const HEALTH_CHECK_MS = 1_000;
const MAX_TUNNEL_PATH = 256;
const INSTANCE_ID = /^[A-Za-z0-9-]{1,64}$/;

/** What hosting needs of this node's apps (the app manager). */
export interface InstanceHost {
  /** Starts an instance of `start`'s app in this node's own sandbox, within its cap; its image is pulled and unpacked here. */
  hostInstance(start: HostedStart, spec: SandboxSpec): Promise<Instance>;
}

export interface HostedInstancesOptions {
  key: Buffer;
  replays: ReplayGuard;
  self: { id: string; name: string };
  host: InstanceHost;
  apps: AppStore;
  isLiveNode(id: string): boolean;
  /** Whether this node is draining: it takes no instances then. */
  draining(): boolean;
  log: Logger;
}

interface Hosted {
  instance: Instance;
  owner: string;
  app: string;
  channel: FrameChannel<OwnerFrame, HostFrame>;
  retired: boolean;
}

export class HostedInstances {
  private readonly hosted = new Map<string, Hosted>();
  private readonly specKey: Buffer;
  private closing = false;

  constructor(private readonly options: HostedInstancesOptions) {
    this.specKey = specKeyOf(options.key);
  }

  /** Instances this node hosts for other nodes now. */
  get count(): number {
    return this.hosted.size;
  }

  /** Asks each owner to move its instances off this node (it drains); each owner is asked once per instance. */
  retireAll(why: string): number {
    let asked = 0;
    for (const entry of this.hosted.values()) {
      if (entry.retired) continue;
      entry.retired = true;
      entry.channel.send({ ev: 'retire', why });
      asked += 1;
    }
    return asked;
  }

  /** Stops every hosted instance (Alto is stopping); their owners see them exit. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.hosted.values()].map((entry) => entry.instance.stop().catch(() => undefined)));
  }

  /** Answers a control channel's request: the socket is this function's from now on. */
  async acceptControl(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let owner: string;
    try {
      owner = this.verify(request, HOSTED_INSTANCE_PATH);
      if (this.closing) throw errors.unavailable('this node is stopping');
      if (this.options.draining()) throw errors.unavailable(`node ${this.options.self.name} is draining: it takes no instances`);
    } catch (error) {
      return refuse(socket, error);
    }
    (socket as Socket).setNoDelay?.(true);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${HOSTED_INSTANCE_PROTOCOL}\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    const channel = new FrameChannel<OwnerFrame, HostFrame>(socket, MAX_START_FRAME_BYTES);
    const first = await new Promise<OwnerFrame | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), START_FRAME_WAIT_MS);
      channel.onFrame((frame) => {
        clearTimeout(timer);
        resolve(frame);
      });
      channel.onClose(() => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    if (!first || first.op !== 'start') return channel.close('no start frame came');
    let instance: Instance;
    try {
      const { start, spec } = this.startOf(first);
      const app = await this.options.apps.findByName(start.projectId, start.environment ?? DEFAULT_ENVIRONMENT, start.app);
      if (!app) throw errors.notFound(`no app "${start.app}" in project ${start.projectId}`);
      if (app.node !== owner) throw errors.conflict(`app "${app.name}" is not node ${owner}'s (the store names ${app.node || 'no node'})`);
      instance = await this.options.host.hostInstance(start, spec);
    } catch (error) {
      const status = isAltoError(error) ? error.status : 500;
      const message = isAltoError(error) ? error.detail : (error as Error).message;
      channel.send({ ev: 'failed', status, message, ...(isSandboxStartError(error) ? { logTail: error.logTail } : {}) });
      return channel.close('the start failed');
    }
    if (channel.isClosed) {
      await instance.stop().catch(() => undefined);
      return;
    }
    this.serve(channel, owner, first.start.app, instance);
  }

  /** The start frame's parts, checked: names bounded, the spec unsealed with this cloud's key. */
  private startOf(frame: Extract<OwnerFrame, { op: 'start' }>): { start: HostedStart; spec: SandboxSpec } {
    const { start } = frame;
    const text = (value: unknown, max: number) => typeof value === 'string' && value.length > 0 && value.length <= max;
    if (!start || !text(start.projectId, 128) || !text(start.app, 128) || !text(start.digest, 80) || !text(start.image, 2_048) || !Number.isInteger(start.version) || (start.environment !== undefined && !text(start.environment, 63)))
      throw errors.badRequest('a start names the project id, app, version, image and digest');
    if (!/^sha256:[a-f0-9]{64}$/.test(start.digest)) throw errors.badRequest('a start names its image by sha256 digest');
    let spec: SandboxSpec;
    try {
      spec = unseal(this.specKey, String(frame.spec)) as SandboxSpec;
    } catch {
      throw errors.badRequest('the start\'s spec is not sealed with this cloud\'s key');
    }
    if (typeof spec !== 'object' || spec === null || !Array.isArray(spec.cmd) || typeof spec.env !== 'object' || !Number.isInteger(spec.port))
      throw errors.badRequest('the start\'s spec is not a sandbox spec');
    if (spec.volumes?.length || spec.links?.length) throw errors.badRequest('an instance with volumes or links runs on its app\'s node');
    return { start, spec };
  }

  /** The instance runs: its lines, health and exit go to the owner; the owner's asks are done. */
  private serve(channel: FrameChannel<OwnerFrame, HostFrame>, owner: string, app: string, instance: Instance): void {
    const entry: Hosted = { instance, owner, app, channel, retired: false };
    this.hosted.set(instance.id, entry);
    const { log, self } = this.options;
    log.info({ instance: instance.id, app, owner }, `hosting instance ${instance.id} of app "${app}" for node ${owner}`);
    channel.send({ ev: 'ready', id: instance.id, driver: instance.driver, node: self.name, ...(instance.exchangeLimit !== undefined ? { exchangeLimit: instance.exchangeLimit } : {}) });
    void this.pipeLogs(channel, instance);
    let health = instance.health;
    const timer = setInterval(() => {
      if (Date.now() - channel.lastHeard > CHANNEL_SILENCE_MS) return channel.close(`node ${owner} sent nothing for ${CHANNEL_SILENCE_MS / 1000} s`);
      if (instance.health !== health && instance.health) {
        health = instance.health;
        channel.send({ ev: 'health', health });
      }
    }, Math.min(HEALTH_CHECK_MS, PING_INTERVAL_MS));
    timer.unref();
    void instance.exited.then((exit) => {
      channel.send({ ev: 'exit', code: exit.code, reason: exit.reason });
      channel.close('the instance exited');
    });
    channel.onFrame((frame) => void this.answer(channel, instance, frame));
    channel.onClose((why) => {
      clearInterval(timer);
      if (this.hosted.get(instance.id) === entry) this.hosted.delete(instance.id);
      if (instance.state === 'exited') return;
      log.warn({ instance: instance.id, app, owner, why }, `stopping instance ${instance.id} of app "${app}": its channel to node ${owner} ended (${why})`);
      void instance.stop().catch(() => undefined);
    });
  }

  private async answer(channel: FrameChannel<OwnerFrame, HostFrame>, instance: Instance, frame: OwnerFrame): Promise<void> {
    if (frame.op === 'start' || !Number.isInteger(frame.n)) return channel.close('a frame that is not an ask');
    try {
      let value: unknown;
      if (frame.op === 'ping') value = undefined;
      else if (frame.op === 'suspend') await instance.suspend();
      else if (frame.op === 'resume') await instance.resume();
      else if (frame.op === 'frozen') value = await instance.isFrozen();
      else if (frame.op === 'stop') value = await instance.stop(Number.isInteger(frame.graceMs) && frame.graceMs >= 0 ? Math.min(frame.graceMs, 600_000) : undefined);
      else return channel.close('an unknown ask');
      channel.send({ re: frame.n, ok: true, ...(value !== undefined ? { value } : {}) });
    } catch (error) {
      channel.send({ re: frame.n, ok: false, message: (error as Error).message });
    }
  }

  /** Every line of the instance to the owner, dropped (and counted in a line) while the owner reads too slowly. */
  private async pipeLogs(channel: FrameChannel<OwnerFrame, HostFrame>, instance: Instance): Promise<void> {
    let dropped = 0;
    try {
      for await (const line of instance.logs({ follow: true })) {
        if (channel.isClosed) return;
        if (channel.socket.writableLength > MAX_BUFFERED_LOG_BYTES) {
          dropped += 1;
          continue;
        }
        if (dropped > 0) {
          channel.send({ ev: 'log', stream: 'stderr', line: `[… ${dropped} lines dropped: the app's node read them too slowly]`, at: line.at });
          dropped = 0;
        }
        channel.send({ ev: 'log', stream: line.stream, line: line.line, at: line.at });
      }
    } catch (error) {
      this.options.log.warn({ err: error, instance: instance.id }, 'reading a hosted instance\'s logs failed');
    }
  }

  /** Answers an instance tunnel's request: the socket is this function's from now on. */
  async acceptTunnel(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    try {
      const path = request.url ?? '';
      if (path.length > MAX_TUNNEL_PATH) throw errors.badRequest('an instance tunnel is POST /v1/internal/instance-tunnel?id=<instance>');
      const owner = this.verify(request, path);
      const id = new URL(path, 'http://alto.local').searchParams.get('id') ?? '';
      if (!INSTANCE_ID.test(id)) throw errors.badRequest('an instance tunnel names its instance: ?id=<instance>');
      const entry = this.hosted.get(id);
      if (!entry || entry.instance.state === 'exited') throw errors.notFound(`node ${this.options.self.name} hosts no instance ${id}`);
      if (entry.owner !== owner) throw errors.forbidden(`instance ${id} is not hosted for node ${owner}`);
      const upstream = await entry.instance.connect();
      upstream.on('error', () => upstream.destroy());
      if (socket.destroyed) return void upstream.destroy();
      (socket as Socket).setNoDelay?.(true);
      upstream.setNoDelay(true);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${TCP_TUNNEL_PROTOCOL}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.once('close', () => socket.destroy());
      socket.once('close', () => upstream.destroy());
      socket.pipe(upstream).pipe(socket);
    } catch (error) {
      refuse(socket, error);
    }
  }

  /** The sending node's id, once the request is a signed upgrade from a live node of this cloud to `path`. */
  private verify(request: IncomingMessage, path: string): string {
    if (request.method !== 'POST' || request.url !== path) throw errors.badRequest(`expected POST ${path.split('?')[0]}`);
    const verified = verifyNodeRequest(this.options.key, request.headers, { method: 'POST', path }, this.options.replays);
    if (!this.options.isLiveNode(verified.nodeId)) throw errors.forbidden(`node "${verified.nodeId}" is not a live node of this cloud`);
    return verified.nodeId;
  }
}

/** A refused upgrade, answered as the API answers (refuseUpgrade); the connection closes after it. */
function refuse(socket: Duplex, error: unknown): void {
  socket.on('error', () => socket.destroy());
  refuseUpgrade(socket, isAltoError(error) ? error : errors.unavailable((error as Error).message));
}

const registered = new WeakMap<Platform, HostedInstances>();

export function registerHostedInstances(platform: Platform, hosted: HostedInstances): () => void {
  registered.set(platform, hosted);
  return () => {
    if (registered.get(platform) === hosted) registered.delete(platform);
  };
}

/** Whether an upgrade request is about an instance hosted here (then `acceptHostedInstanceRequest` answers it). */
export function isHostedInstanceRequest(request: IncomingMessage): boolean {
  const url = request.url ?? '';
  const upgrade = (request.headers.upgrade ?? '').toLowerCase();
  return (url === HOSTED_INSTANCE_PATH && upgrade === HOSTED_INSTANCE_PROTOCOL) || (url.startsWith(`${INSTANCE_TUNNEL_PATH}?`) && upgrade === TCP_TUNNEL_PROTOCOL);
}

export function acceptHostedInstanceRequest(platform: Platform, request: IncomingMessage, socket: Duplex, head: Buffer): void {
  const hosted = registered.get(platform);
  if (!hosted) return refuse(socket, errors.unavailable('this node has not joined a cloud yet').withHeaders({ 'retry-after': '1' }));
  const work = request.url === HOSTED_INSTANCE_PATH ? hosted.acceptControl(request, socket, head) : hosted.acceptTunnel(request, socket, head);
  void work.catch((error: unknown) => {
    socket.destroy();
    platform.log.warn({ err: error }, 'a hosted instance request failed');
  });
}
