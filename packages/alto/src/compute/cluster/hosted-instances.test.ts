/**
 * Instances placed on another node, over real sockets on loopback: an owner (PeerPlacer and
 * RemoteInstance) and a host (HostedInstances behind an HTTP server's upgrades, as the edge
 * routes them) with a test instance behind it (an echo server). The start carries the spec
 * sealed; the instance's lines come back; its port is reached through an instance tunnel; suspend,
 * resume, isFrozen and stop are done on the host; an owner that goes away stops it there; a host
 * that goes away ends it for the owner. Refused: an unsigned or foreign-key request, a node that
 * is not live, a tunnel from a node that is not the owner, a start for an app the store gives
 * another node, and a draining host (the placer then has nowhere to go). Frames are bounded and
 * a sealed spec altered in transit is refused.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import type { AltoError } from '../../kit/errors.js';
import type { AppStore } from '../../store/apps/port.js';
import type { ListedNode } from '../../store/nodes/port.js';
import type { Instance, InstanceExit, LogLine, SandboxSpec } from '../sandbox/index.js';
import { acceptHostedInstanceRequest, HostedInstances, isHostedInstanceRequest, registerHostedInstances } from './hosted-instances.js';
import { FrameChannel, seal, specKeyOf, unseal, type HostedStart } from './instance-channel.js';
import { ReplayGuard } from './node-link.js';
import type { PeerView } from './peers.js';
import { PeerPlacer } from './remote-instances.js';
import { openSignedUpgrade, TCP_TUNNEL_PROTOCOL } from './tcp-tunnel.js';

const log = pino({ level: 'silent' });
const key = randomBytes(32);
const START: HostedStart = { projectId: 'p1', app: 'web', version: 3, digest: `sha256:${'b'.repeat(64)}`, image: 'registry.test/p/web:v3' };
const SPEC: SandboxSpec = { rootfs: '/owner/rootfs', entrypoint: [], cmd: ['serve'], env: { SECRET_TOKEN: 'hunter2' }, port: 8080, memoryMiB: 64, cpus: 1 };

/** An instance of the test: its port is an echo server; it records what it was asked. */
class TestInstance extends EventEmitter implements Instance {
  readonly events = this;
  readonly driver = 'process' as const;
  readonly host = '127.0.0.1';
  state: Instance['state'] = 'running';
  readonly asked: string[] = [];
  readonly exited: Promise<InstanceExit>;
  private end!: (exit: InstanceExit) => void;
  constructor(
    readonly id: string,
    readonly port: number,
    readonly spec: SandboxSpec,
  ) {
    super();
    this.exited = new Promise((resolve) => (this.end = resolve));
  }
  connect(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.port, '127.0.0.1', () => resolve(socket));
      socket.once('error', reject);
    });
  }
  async *logs(): AsyncIterable<LogLine> {
    yield { stream: 'stdout', line: `serving ${this.spec.cmd.join(' ')}`, at: 1 };
    await this.exited;
  }
  async stop(): Promise<InstanceExit> {
    this.asked.push('stop');
    this.exit({ code: 0, reason: 'stopped' });
    return this.exited;
  }
  exit(exit: InstanceExit): void {
    this.state = 'exited';
    this.end(exit);
    this.emit('exit', exit);
  }
  async suspend(): Promise<void> {
    this.asked.push('suspend');
    this.state = 'suspended';
  }
  async resume(): Promise<void> {
    this.asked.push('resume');
    this.state = 'running';
  }
  async isFrozen(): Promise<boolean> {
    return this.state === 'suspended';
  }
  async snapshot(): Promise<void> {
    throw new Error('no snapshots here');
  }
}

let echo: ReturnType<typeof createServer>;
let server: Server;
let port: number;
let hosted: HostedInstances;
let draining = false;
let ownerOfApp = 'owner';
const instances: TestInstance[] = [];

before(async () => {
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  const platform = { log } as never;
  hosted = new HostedInstances({
    key,
    replays: new ReplayGuard(),
    self: { id: 'host', name: 'host-1' },
    host: {
      hostInstance: async (start, spec) => {
        assert.deepEqual(start, START);
        const instance = new TestInstance(`i${instances.length + 1}`, (echo.address() as AddressInfo).port, spec);
        instances.push(instance);
        return instance;
      },
    },
    apps: { findByName: async (_project: string, name: string) => ({ name, node: ownerOfApp }) } as unknown as AppStore,
    isLiveNode: (id) => id === 'owner' || id === 'other',
    draining: () => draining,
    log,
  });
  registerHostedInstances(platform, hosted);
  server = createHttpServer();
  server.on('upgrade', (request, socket, head) => {
    assert.ok(isHostedInstanceRequest(request), `an upgrade for a hosted instance: ${request.url}`);
    acceptHostedInstanceRequest(platform, request, socket, head);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await new Promise((resolve) => echo.close(resolve));
});

const hostNode = (more: Partial<ListedNode['capacity']> = {}): ListedNode =>
  ({ id: 'host', name: 'host-1', live: true, draining: false, capacity: { memoryFreeMiB: 100, sandboxes: 0, maxInstances: 2, ...more } }) as unknown as ListedNode;

function placer(self = 'owner', nodes: ListedNode[] = [hostNode()]): PeerPlacer {
  const peers = {
    liveNodes: () => nodes,
    addressOf: (id: string) => (nodes.some((node) => node.id === id) ? { id, name: 'host-1', host: '127.0.0.1', port, tls: false } : undefined),
  } as unknown as PeerView;
  return new PeerPlacer({ key, self: { id: self, name: self }, peers, log });
}

const until = async (condition: () => boolean, what: string) => {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), what);
};

test('an instance started on another node: its lines, its port through a tunnel, suspend, resume and stop', async () => {
  const remote = await placer().start(START, SPEC);
  assert.ok(remote, 'the host took it');
  const instance = instances.at(-1)!;
  assert.equal(remote.id, instance.id);
  assert.equal(remote.node, 'host-1');
  assert.equal(instance.spec.env.SECRET_TOKEN, 'hunter2', 'the spec arrived whole');
  assert.equal(hosted.count, 1);

  const lines: string[] = [];
  for await (const line of remote.logs()) lines.push(line.line);
  assert.deepEqual(lines, ['serving serve']);

  const socket = await remote.connect();
  socket.write('ping');
  const echoed = await new Promise<string>((resolve) => socket.once('data', (data: Buffer) => resolve(data.toString())));
  assert.equal(echoed, 'ping');
  socket.destroy();

  await remote.suspend();
  assert.equal(await remote.isFrozen(), true);
  assert.equal(remote.state, 'suspended');
  await remote.resume();
  assert.equal(await remote.isFrozen(), false);
  await assert.rejects(remote.snapshot('/anywhere'), /snapshots stay on the app's own node/);
  const exit = await remote.stop(1_000);
  assert.deepEqual(exit, { code: 0, reason: 'stopped' });
  assert.deepEqual(instance.asked, ['suspend', 'resume', 'stop']);
  await until(() => hosted.count === 0, 'the host forgets it');
});

test('an owner that goes away stops the instance on the host; a host whose instance exits ends it for the owner', async () => {
  const remote = (await placer().start(START, SPEC))!;
  const instance = instances.at(-1)!;
  (remote as unknown as { channel: FrameChannel<unknown, unknown> }).channel.socket.destroy();
  await until(() => instance.asked.includes('stop'), 'the host stops the instance of an owner that is gone');
  assert.match((await remote.exited).reason, /its node, host-1, is gone/);

  const second = (await placer().start(START, SPEC))!;
  instances.at(-1)!.exit({ code: 3, reason: 'exited' });
  assert.deepEqual(await second.exited, { code: 3, reason: 'exited' });
  assert.equal(second.state, 'exited');
});

test('a tunnel only for the instance\'s owner; requests unsigned, signed with another key or from a node that is not live are refused', async () => {
  const remote = (await placer().start(START, SPEC))!;
  const peer = { id: 'host', name: 'host-1', host: '127.0.0.1', port, tls: false };
  const tunnel = `/v1/internal/instance-tunnel?id=${remote.id}`;
  await assert.rejects(openSignedUpgrade(peer, key, 'other', tunnel, TCP_TUNNEL_PROTOCOL), (error: { status: number; message: string }) => error.status === 403 && /not hosted for node other/.test(error.message));
  await assert.rejects(openSignedUpgrade(peer, randomBytes(32), 'owner', tunnel, TCP_TUNNEL_PROTOCOL), (error: { status: number }) => error.status === 401);
  await assert.rejects(openSignedUpgrade(peer, key, 'stranger', tunnel, TCP_TUNNEL_PROTOCOL), (error: { status: number; message: string }) => error.status === 403 && /not a live node/.test(error.message));
  await assert.rejects(openSignedUpgrade(peer, key, 'owner', '/v1/internal/instance-tunnel?id=nothere', TCP_TUNNEL_PROTOCOL), (error: { status: number }) => error.status === 404);
  const unsigned = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('POST /v1/internal/hosted-instance HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: alto-instance\r\ncontent-length: 0\r\n\r\n'));
    let answer = '';
    socket.on('data', (data: Buffer) => (answer += data.toString()));
    socket.on('close', () => resolve(answer));
  });
  assert.match(unsigned, /^HTTP\/1\.1 401/);
  await remote.stop();
});

test('a start for an app the store gives another node is refused, naming it; a draining host takes none', async () => {
  ownerOfApp = 'other';
  await assert.rejects(placer().start(START, SPEC), (error: AltoError) => error.status === 409 && /not node owner's \(the store names other\)/.test(error.detail));
  ownerOfApp = 'owner';
  draining = true;
  assert.equal(await placer().start(START, SPEC), undefined, 'no node with room: the caller hears none');
  draining = false;
  // A node full by its last heartbeat, or draining, or this node itself, is no candidate.
  assert.deepEqual(placer('owner', [hostNode({ sandboxes: 2, maxInstances: 2 })]).candidates(), []);
  assert.deepEqual(placer('host', [hostNode()]).candidates(), []);
  assert.deepEqual(placer('owner', [{ ...hostNode(), draining: true } as ListedNode]).candidates(), []);
});

test('the two random candidates are tried the one with more room first, the rest after', () => {
  const node = (id: string, sandboxes: number, memoryFreeMiB: number) => ({ ...hostNode({ sandboxes, maxInstances: 4, memoryFreeMiB }), id, name: id }) as ListedNode;
  const nodes = [node('a', 3, 900), node('b', 1, 100), node('c', 1, 500), node('d', 0, 50)];
  // random() = 0 leaves the shuffle's order a fixed permutation; the first two are then sorted by room, then memory.
  const order = placer('owner', nodes).candidates(() => 0).map((each) => each.id);
  assert.equal(order.length, 4);
  const [first, second] = order.slice(0, 2).map((id) => nodes.find((each) => each.id === id)!);
  const room = (each: ListedNode) => (each.capacity.maxInstances ?? 0) - (each.capacity.sandboxes ?? 0);
  assert.ok(room(first) > room(second) || (room(first) === room(second) && first.capacity.memoryFreeMiB >= second.capacity.memoryFreeMiB), order.join(','));
});

test('frames are bounded and sealed specs cannot be altered', async () => {
  const sealed = seal(specKeyOf(key), SPEC);
  assert.deepEqual(unseal(specKeyOf(key), sealed), SPEC);
  const bytes = Buffer.from(sealed, 'base64');
  bytes[20] ^= 1;
  assert.throws(() => unseal(specKeyOf(key), bytes.toString('base64')));
  assert.throws(() => unseal(specKeyOf(randomBytes(32)), sealed));

  const wire = new PassThrough();
  const channel = new FrameChannel<{ n: number }, never>(wire, 16);
  const heard: unknown[] = [];
  const closed = new Promise<string>((resolve) => channel.onClose(resolve));
  channel.onFrame((frame) => heard.push(frame));
  wire.write('{"n":1}\n{"n"');
  wire.write(':2}\n');
  wire.write(`{"n":${'9'.repeat(70_000)}`);
  assert.match(await closed, /longer than 65536 bytes/);
  assert.deepEqual(heard, [{ n: 1 }, { n: 2 }]);
});
