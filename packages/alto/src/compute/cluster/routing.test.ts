/**
 * @module compute/cluster/routing.test
 * Routing around a hand-off (drain.ts), with stand-ins for the local gateway, the apps store and
 * the peers: a request relayed to the node that handed an app over (by a node that still thinks
 * it runs there) is relayed once more, to the app's new node, where without the hand-off it is
 * refused as relayed twice; that lasts a while, not forever. On the receiving node a request
 * for an app it is taking waits until the app is ready here, then goes to the local instance,
 * also one the gateway refused just as the hand-off began.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errors } from '../../kit/errors.js';
import type { AppAddress, AppResolver, ProxyTarget } from '../apps/gateway.js';
import type { AppStore, StoredApp } from '../../store/apps/port.js';
import type { PeerView } from './peers.js';
import { ClusterRouting, type RelayTarget } from './routing.js';

const WEB: AppAddress = { app: 'web', project: 'shop' };
const NEW_NODE = { id: 'new', name: 'node-new', host: '127.0.0.2', port: 4002, tls: false };

function routingOf(served: Set<string>) {
  const local: AppResolver = {
    acquire: (address) =>
      served.has(address.app)
        ? Promise.resolve<ProxyTarget>({ host: '10.0.0.1', port: 8080, connect: () => Promise.reject(new Error('not in this test')), release: () => undefined })
        : Promise.reject(errors.unavailable(`app "${address.app}" runs on node new, not on this node`)),
  };
  const stored = { id: 'w1', name: 'web', projectName: 'shop', node: 'new', settings: '{}' } as StoredApp;
  const apps = { findByAddress: async () => stored } as unknown as AppStore;
  const peers = {
    addressOf: (id: string) => (id === NEW_NODE.id ? NEW_NODE : undefined),
    find: () => undefined,
  } as unknown as PeerView;
  return { routing: new ClusterRouting({ local, apps, peers, self: { id: 'old', name: 'node-old' }, movable: () => true }), local };
}

test('a relayed request for an app this node handed over goes on to its new node, for a while', async () => {
  const { routing } = routingOf(new Set());
  await assert.rejects(routing.acquire(WEB, 'http', true), /not relayed again/, 'without the hand-off: relayed twice is refused');
  routing.movedTo(WEB, 'new');
  const target = (await routing.acquire(WEB, 'http', true)) as RelayTarget;
  assert.deepEqual([target.host, target.port, target.via], [NEW_NODE.host, NEW_NODE.port, 'node-old']);
  const direct = (await routing.acquire(WEB, 'http', false)) as RelayTarget;
  assert.equal(direct.host, NEW_NODE.host, 'a request from a client goes there too');
  await assert.rejects(routing.acquire(WEB, 'tcp', false), /runs on node new/, 'TCP is not relayed');
  routing.movedTo(WEB, 'new', Date.now() - 60_000);
  await assert.rejects(routing.acquire(WEB, 'http', true), /not relayed again/, 'long after the hand-off every node reads the new owner');
});

test('a request for an app this node is taking waits until it is ready here, then goes to the local instance', async () => {
  const served = new Set<string>();
  const { routing } = routingOf(served);
  let ready!: () => void;
  routing.arriving(WEB, new Promise<void>((resolve) => (ready = resolve)));
  let answered = false;
  const waiting = routing.acquire(WEB, 'http', true).finally(() => (answered = true));
  // Every other turn of the event loop runs meanwhile; the request is still held.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(answered, false, 'held while the app starts here');
  served.add('web');
  ready();
  assert.equal((await waiting).host, '10.0.0.1', 'the local instance');
  served.delete('web');
  await assert.rejects(routing.acquire(WEB, 'http', true), /not relayed again/, 'once it arrived, nothing more is held');
});

test('a request the gateway refused just before the app began arriving waits for it too', async () => {
  const served = new Set<string>();
  const { routing, local } = routingOf(served);
  let ready!: () => void;
  // The gateway's refusal comes after the hand-off began (it read the store after the move).
  const refuse = local.acquire.bind(local);
  local.acquire = (address, kind) => {
    routing.arriving(WEB, new Promise<void>((resolve) => (ready = resolve)));
    local.acquire = refuse;
    return refuse(address, kind);
  };
  let answered = false;
  const waiting = routing.acquire(WEB, 'http', true).finally(() => (answered = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(answered, false, 'held while the app starts here');
  served.add('web');
  ready();
  assert.equal((await waiting).host, '10.0.0.1');
});

test('a fenced node (its lease lapsed, its apps not yet checked) answers 503 for every app, local or not', async () => {
  let fenced = true;
  const local: AppResolver = { acquire: () => Promise.resolve<ProxyTarget>({ host: '10.0.0.1', port: 8080, connect: () => Promise.reject(new Error('not in this test')), release: () => undefined }) };
  const routing = new ClusterRouting({ local, apps: {} as AppStore, peers: {} as PeerView, self: { id: 'old', name: 'node-old' }, movable: () => true, fenced: () => fenced });
  await assert.rejects(routing.acquire(WEB, 'http', false), (error: Error & { status?: number }) => error.status === 503 && /rejoining the cloud/.test(error.message));
  fenced = false;
  assert.equal((await routing.acquire(WEB, 'http', false)).host, '10.0.0.1');
});
