/**
 * The node link: a request signed by one node is accepted by another of the same cloud, once,
 * within the window; altered, replayed, late, early, unsigned, or signed with another cloud's
 * key, it is refused with 401 saying why. Times are given, so nothing waits on a clock.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { deriveNodeLinkKey, NODE_LINK_HEADERS, NODE_LINK_WINDOW_MS, ReplayGuard, signNodeRequest, verifyNodeRequest, type NodeRequest } from './node-link.js';

const masterKey = randomBytes(32);
const key = deriveNodeLinkKey(masterKey);
const NOW = 1_800_000_000_000;
const request: NodeRequest = { method: 'POST', path: '/v1/internal/Wake?app=web', body: Buffer.from('{"app":"web","project":"fleet"}') };

const refused = (pattern: RegExp, status = 401) => (error: unknown) => isAltoError(error) && error.status === status && pattern.test(error.detail);

test('the link key is derived: fixed for one master key, other for another, never the master key itself', () => {
  assert.equal(key.length, 32);
  assert.deepEqual(deriveNodeLinkKey(Buffer.from(masterKey)), key);
  assert.notDeepEqual(deriveNodeLinkKey(randomBytes(32)), key);
  assert.notDeepEqual(key, masterKey);
  assert.throws(() => deriveNodeLinkKey(randomBytes(16)), /32 bytes/);
});

test('a signed request is accepted by a node of the same cloud, which learns the sender', () => {
  const headers = signNodeRequest(key, 'node-a', request, { now: NOW });
  assert.deepEqual(Object.keys(headers).sort(), Object.values(NODE_LINK_HEADERS).sort());
  assert.deepEqual(verifyNodeRequest(deriveNodeLinkKey(masterKey), headers, request, new ReplayGuard(), NOW + 1), { nodeId: 'node-a', signedAt: NOW });
  // Clocks may differ by up to the window, either way; a method in lower case is the same method.
  const early = signNodeRequest(key, 'node-a', request, { now: NOW + NODE_LINK_WINDOW_MS });
  assert.equal(verifyNodeRequest(key, early, { ...request, method: 'post' }, new ReplayGuard(), NOW).nodeId, 'node-a');
  const empty = signNodeRequest(key, 'node-b', { method: 'GET', path: '/v1/status' }, { now: NOW });
  assert.equal(verifyNodeRequest(key, empty, { method: 'GET', path: '/v1/status', body: '' }, new ReplayGuard(), NOW).nodeId, 'node-b', 'no body is an empty body');
});

test('a request signed with another cloud\'s key is refused', () => {
  const headers = signNodeRequest(deriveNodeLinkKey(randomBytes(32)), 'node-a', request, { now: NOW });
  assert.throws(() => verifyNodeRequest(key, headers, request, new ReplayGuard(), NOW), refused(/signature of node "node-a" does not match.*another cloud's key/));
});

test('any change to the node, time, nonce, method, path or body breaks the signature', () => {
  const headers = signNodeRequest(key, 'node-a', request, { now: NOW });
  const guard = new ReplayGuard();
  const altered: [string, Record<string, string>, NodeRequest][] = [
    ['node', { ...headers, [NODE_LINK_HEADERS.node]: 'node-b' }, request],
    ['time', { ...headers, [NODE_LINK_HEADERS.timestamp]: String(NOW + 1) }, request],
    ['nonce', { ...headers, [NODE_LINK_HEADERS.nonce]: randomBytes(16).toString('hex') }, request],
    ['method', headers, { ...request, method: 'PUT' }],
    ['path', headers, { ...request, path: '/v1/internal/Wake?app=api' }],
    ['body', headers, { ...request, body: Buffer.from('{"app":"api","project":"fleet"}') }],
    ['signature', { ...headers, [NODE_LINK_HEADERS.signature]: 'f'.repeat(64) }, request],
  ];
  for (const [what, changedHeaders, changedRequest] of altered) {
    assert.throws(() => verifyNodeRequest(key, changedHeaders, changedRequest, guard, NOW), refused(/does not match/), what);
  }
  assert.equal(verifyNodeRequest(key, headers, request, guard, NOW).nodeId, 'node-a', 'the refusals did not use up the real one');
});

test('a time more than the window off the receiver\'s clock is refused, either way', () => {
  const late = signNodeRequest(key, 'node-a', request, { now: NOW - NODE_LINK_WINDOW_MS - 1 });
  assert.throws(() => verifyNodeRequest(key, late, request, new ReplayGuard(), NOW), refused(/more than 30 s from this node's clock/));
  const early = signNodeRequest(key, 'node-a', request, { now: NOW + NODE_LINK_WINDOW_MS + 1 });
  assert.throws(() => verifyNodeRequest(key, early, request, new ReplayGuard(), NOW), refused(/more than 30 s/));
});

test('a replay within the window is refused; two equal requests with their own nonces are not replays', () => {
  const guard = new ReplayGuard();
  const headers = signNodeRequest(key, 'node-a', request, { now: NOW });
  verifyNodeRequest(key, headers, request, guard, NOW);
  assert.throws(() => verifyNodeRequest(key, headers, request, guard, NOW + 10), refused(/node "node-a" sent this signed request before \(a replay\)/));
  assert.throws(() => verifyNodeRequest(key, headers, request, guard, NOW + NODE_LINK_WINDOW_MS), refused(/replay/));
  assert.throws(() => verifyNodeRequest(key, headers, request, guard, NOW + NODE_LINK_WINDOW_MS + 1), refused(/more than 30 s/), 'past the window: too old');
  const again = signNodeRequest(key, 'node-a', request, { now: NOW });
  assert.equal(verifyNodeRequest(key, again, request, guard, NOW).nodeId, 'node-a');
});

test('missing or malformed headers are refused before any hashing, naming the header', () => {
  const headers = signNodeRequest(key, 'node-a', request, { now: NOW });
  for (const name of Object.values(NODE_LINK_HEADERS)) {
    const { [name]: _dropped, ...rest } = headers;
    assert.throws(() => verifyNodeRequest(key, rest, request, new ReplayGuard(), NOW), refused(new RegExp(`no ${name} header`)));
  }
  const malformed: [string, string | string[]][] = [
    [NODE_LINK_HEADERS.node, '../etc'],
    [NODE_LINK_HEADERS.node, 'x'.repeat(65)],
    [NODE_LINK_HEADERS.timestamp, '1e12'],
    [NODE_LINK_HEADERS.nonce, 'XYZ'],
    [NODE_LINK_HEADERS.signature, headers[NODE_LINK_HEADERS.signature].toUpperCase()],
    [NODE_LINK_HEADERS.signature, [headers[NODE_LINK_HEADERS.signature], headers[NODE_LINK_HEADERS.signature]]],
  ];
  for (const [name, value] of malformed) {
    assert.throws(() => verifyNodeRequest(key, { ...headers, [name]: value }, request, new ReplayGuard(), NOW), refused(new RegExp(`${name} must be`)), `${name}: ${value}`);
  }
  assert.throws(() => verifyNodeRequest(key, headers, { ...request, path: `/${'a'.repeat(9_000)}` }, new ReplayGuard(), NOW), refused(/method or path/));
});

test('the replay memory is bounded: full of live signatures it refuses with 503, and forgets expired ones', () => {
  const guard = new ReplayGuard(2);
  verifyNodeRequest(key, signNodeRequest(key, 'node-a', request, { now: NOW }), request, guard, NOW);
  verifyNodeRequest(key, signNodeRequest(key, 'node-a', request, { now: NOW + 5 }), request, guard, NOW + 5);
  const third = signNodeRequest(key, 'node-a', request, { now: NOW + 10 });
  assert.throws(() => verifyNodeRequest(key, third, request, guard, NOW + 10), refused(/too many node requests/, 503));
  assert.equal(guard.size, 2);
  const later = NOW + NODE_LINK_WINDOW_MS + 1;
  assert.equal(verifyNodeRequest(key, signNodeRequest(key, 'node-a', request, { now: later }), request, guard, later).nodeId, 'node-a');
  assert.equal(guard.size, 2, 'the first one aged out and was forgotten');
});

test('signing refuses what it cannot sign', () => {
  assert.throws(() => signNodeRequest(key, 'bad id', request), /node id/);
  assert.throws(() => signNodeRequest(key, 'node-a', { ...request, method: 'PO ST' }), /not an HTTP method/);
  assert.throws(() => signNodeRequest(key, 'node-a', request, { nonce: 'short' }), /nonce/);
});
