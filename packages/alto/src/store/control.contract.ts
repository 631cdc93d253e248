/**
 * @module store/control.contract
 * The behaviour every control store adapter must have, as one node:test suite; each adapter's
 * test (`control.contract.test.ts`) runs it. `stores` are two handles on the same state, as two
 * Alto processes sharing one store would have: what one writes, the other reads at once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { AltoError } from '../kit/errors.js';
import type { AccountRecord, ControlStore, KeyRecord, ProjectRecord } from './control.js';

/** Waits until `condition()` holds, looking every 2 ms, or fails after `timeoutMs`. */
async function waitFor(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export interface ControlAdapterUnderTest {
  /** Two handles on the same state, as two processes would have. */
  stores: [ControlStore, ControlStore];
  cleanup(): Promise<void>;
}

export function runControlContract(name: string, open: () => Promise<ControlAdapterUnderTest>): void {
  describe(`control store contract: ${name}`, () => {
    let adapter: ControlAdapterUnderTest;
    let store: ControlStore;
    let other: ControlStore;
    const run = randomBytes(4).toString('hex');
    const id = (label: string) => `${label}-${run}`;

    const account = (label: string, overrides: Partial<AccountRecord> = {}): AccountRecord => ({
      id: id(`account-${label}`),
      email: `${label}-${run}@example.com`,
      passwordHash: `hash-of-${label}`,
      emailVerified: false,
      createdAt: 1_700_000_000_000,
      ...overrides,
    });
    const project = (owner: AccountRecord, name: string, createdAt = 1_700_000_000_000): ProjectRecord => ({
      id: id(`project-${owner.id}-${name}`),
      accountId: owner.id,
      name,
      createdAt,
    });
    const key = (of: ProjectRecord, label: string, overrides: Partial<KeyRecord> = {}): KeyRecord => ({
      id: id(`key-${label}`),
      accountId: of.accountId,
      projectId: of.id,
      environment: 'dev',
      scopes: ['db', 'cache'],
      description: `key ${label}`,
      role: 'project',
      status: 'active',
      prefix: 'alto_ab',
      createdAt: 1_700_000_000_000,
      ...overrides,
    });
    const conflict = (error: unknown) => error instanceof AltoError && error.code === 'conflict' && error.status === 409;

    before(async () => {
      adapter = await open();
      [store, other] = adapter.stores;
    });
    after(() => adapter.cleanup());

    test('accounts: created, read by id and by email, verified; a second account with one email is a conflict', async () => {
      const alice = account('alice');
      await store.createAccount(alice);
      assert.deepEqual(await other.getAccount(alice.id), alice);
      assert.deepEqual(await other.findAccountByEmail(alice.email!), alice);
      assert.equal(await store.getAccount(id('nobody')), undefined);
      assert.equal(await store.findAccountByEmail(`nobody-${run}@example.com`), undefined);
      await other.markEmailVerified(alice.id);
      assert.equal((await store.getAccount(alice.id))?.emailVerified, true);
      await assert.rejects(store.createAccount(account('alice', { id: id('account-alice-2') })), conflict);
      // Accounts without an email (the operator's) do not collide with each other.
      const operator = account('operator', { email: null, passwordHash: null });
      await store.createAccount(operator);
      await store.createAccount(account('operator-2', { email: null, passwordHash: null }));
      assert.deepEqual(await store.getAccount(operator.id), operator);
    });

    test('projects: found by account and name, listed oldest first per account or for all; names unique per account', async () => {
      const owner = account('project-owner');
      const neighbour = account('neighbour');
      await store.createAccount(owner);
      await store.createAccount(neighbour);
      const web = project(owner, 'web', 1_700_000_000_002);
      const api = project(owner, 'api', 1_700_000_000_002);
      const first = project(owner, 'first', 1_700_000_000_001);
      const theirs = project(neighbour, 'web');
      for (const created of [web, api, first, theirs]) await store.createProject(created);
      assert.deepEqual(await other.findProject(owner.id, 'web'), web);
      assert.deepEqual(await other.findProject(neighbour.id, 'web'), theirs);
      assert.equal(await other.findProject(owner.id, 'missing'), undefined);
      assert.deepEqual(await other.listProjects(owner.id), [first, api, web], 'by creation time, then name');
      const all = (await other.listProjects(undefined)).filter((p) => [owner.id, neighbour.id].includes(p.accountId));
      assert.deepEqual(all, [theirs, first, api, web]);
      await assert.rejects(store.createProject({ ...web, id: id('project-web-again') }), conflict);
    });

    test('keys: found by hash and id with their project name, listed newest first without hashes, status changes seen by the other handle', async () => {
      const owner = account('key-owner');
      await store.createAccount(owner);
      const home = project(owner, 'home');
      await store.createProject(home);
      const older = key(home, 'older', { createdAt: 1_700_000_000_001 });
      const newer = key(home, 'newer', { createdAt: 1_700_000_000_009, scopes: ['*'], role: 'owner', environment: 'prod', prefix: '' });
      await store.insertKey(older, id('hash-older'));
      await store.insertKey(newer, id('hash-newer'));
      assert.deepEqual(await other.findKeyByHash(id('hash-older')), { ...older, projectName: 'home' });
      assert.deepEqual(await other.getKey(newer.id), { ...newer, projectName: 'home' });
      assert.equal(await other.findKeyByHash(id('hash-unknown')), undefined);
      assert.equal(await other.getKey(id('key-unknown')), undefined);
      const listed = await other.listKeys(home.id);
      assert.deepEqual(listed, [newer, older]);
      assert.ok(listed.every((k) => !('hash' in k) && !('projectName' in k)));

      await store.setKeyStatus(older.id, 'blocked');
      assert.equal((await other.findKeyByHash(id('hash-older')))?.status, 'blocked');
      await other.setKeyStatus(older.id, 'active');
      assert.equal((await store.getKey(older.id))?.status, 'active');
      await store.setKeyStatus(older.id, 'revoked');
      assert.equal((await other.findKeyByHash(id('hash-older')))?.status, 'revoked', 'a revocation is seen by the next lookup anywhere');
    });

    test('the key generation moves on both handles when a key changes status or goes with its project, and stays put otherwise', async () => {
      const owner = account('generations');
      await store.createAccount(owner);
      const home = project(owner, 'generations');
      await store.createProject(home);
      const subject = key(home, 'generation-key');
      await store.insertKey(subject, id('hash-generation'));
      // Notifications of the earlier tests' changes may still be arriving: wait until both handles
      // have kept one generation for 50 ms.
      let quietSince = Date.now();
      let last = [store.keyGeneration(), other.keyGeneration()];
      await waitFor(() => {
        const now = [store.keyGeneration(), other.keyGeneration()];
        if (now[0] !== last[0] || now[1] !== last[1]) [last, quietSince] = [now, Date.now()];
        return Date.now() - quietSince >= 50;
      }, 'no more notifications', 2_000);
      const before = [store.keyGeneration(), other.keyGeneration()];
      assert.ok(before.every(Number.isFinite));
      assert.deepEqual([store.keyGeneration(), other.keyGeneration()], before, 'no change, no new generation');
      await store.getSetting('anything');
      await other.setSetting(id('unrelated'), 'x');
      assert.deepEqual([store.keyGeneration(), other.keyGeneration()], before, 'other writes leave it');

      // The writer sees its own change when its promise resolves; the other handle when the
      // notification arrives (a file event on SQLite, NOTIFY on PostgreSQL).
      await store.setKeyStatus(subject.id, 'revoked');
      assert.notEqual(store.keyGeneration(), before[0], 'the writer sees its own change');
      await waitFor(() => other.keyGeneration() !== before[1], 'the notification on the other handle', 2_000);

      const afterRevoke = [store.keyGeneration(), other.keyGeneration()];
      await other.deleteProject(home.id);
      assert.notEqual(other.keyGeneration(), afterRevoke[1]);
      await waitFor(() => store.keyGeneration() !== afterRevoke[0], 'the notification on the first handle', 2_000);
    });

    test('deleting a project deletes its keys and nothing else', async () => {
      const owner = account('deleter');
      await store.createAccount(owner);
      const doomed = project(owner, 'doomed');
      const kept = project(owner, 'kept');
      await store.createProject(doomed);
      await store.createProject(kept);
      await store.insertKey(key(doomed, 'doomed-key'), id('hash-doomed'));
      await store.insertKey(key(kept, 'kept-key'), id('hash-kept'));
      await store.deleteProject(doomed.id);
      assert.equal(await other.findProject(owner.id, 'doomed'), undefined);
      assert.equal(await other.findKeyByHash(id('hash-doomed')), undefined);
      assert.equal(await other.getKey(id('key-doomed-key')), undefined);
      assert.deepEqual(await other.listKeys(doomed.id), []);
      assert.equal((await other.findKeyByHash(id('hash-kept')))?.projectName, 'kept');
      assert.deepEqual(await other.listProjects(owner.id), [kept]);
      assert.deepEqual(await other.getAccount(owner.id), owner);
      // The name is free again.
      await store.createProject({ ...doomed, id: id('project-doomed-again') });
      assert.equal((await other.findProject(owner.id, 'doomed'))?.id, id('project-doomed-again'));
      await store.deleteProject(id('project-never-was'));
    });

    test('environments acted in: recorded once per project, listed sorted by the other handle, gone with their project', async () => {
      const owner = account('environments');
      await store.createAccount(owner);
      const home = project(owner, 'environments-home');
      const neighbour = project(owner, 'environments-neighbour');
      await store.createProject(home);
      await store.createProject(neighbour);
      assert.deepEqual(await other.listEnvironments(home.id), [], 'none recorded yet');
      await store.noteEnvironment(home.id, 'qa');
      await other.noteEnvironment(home.id, 'preview-2');
      // Recording one already there is no conflict, from either handle, even at once.
      await Promise.all([store.noteEnvironment(home.id, 'qa'), other.noteEnvironment(home.id, 'qa'), store.noteEnvironment(home.id, 'qa')]);
      await store.noteEnvironment(neighbour.id, 'staging');
      assert.deepEqual(await other.listEnvironments(home.id), ['preview-2', 'qa']);
      assert.deepEqual(await store.listEnvironments(neighbour.id), ['staging'], 'each project its own');
      assert.deepEqual(await store.listEnvironments(id('project-never-was')), []);

      await other.deleteProject(home.id);
      assert.deepEqual(await store.listEnvironments(home.id), [], 'deleted with the project');
      assert.deepEqual(await store.listEnvironments(neighbour.id), ['staging'], 'another project keeps its own');
      // A project made again under the name starts with none.
      const again = { ...home, id: id('project-environments-again') };
      await store.createProject(again);
      assert.deepEqual(await other.listEnvironments(again.id), []);
    });

    test('settings: set replaces, claim keeps the first value; both handles see the same', async () => {
      const setting = id('setting');
      assert.equal(await store.getSetting(setting), undefined);
      await store.setSetting(setting, 'one');
      assert.equal(await other.getSetting(setting), 'one');
      await other.setSetting(setting, 'two');
      assert.equal(await store.getSetting(setting), 'two');

      const claimed = id('claimed');
      assert.equal(await store.claimSetting(claimed, 'first'), 'first');
      assert.equal(await other.claimSetting(claimed, 'second'), 'first');
      assert.equal(await other.getSetting(claimed), 'first');
      const raced = id('raced');
      const answers = await Promise.all([store.claimSetting(raced, 'a'), other.claimSetting(raced, 'b'), store.claimSetting(raced, 'c')]);
      assert.equal(new Set(answers).size, 1, `every claimant sees the one value that won: ${answers.join(', ')}`);
      assert.equal(await store.getSetting(raced), answers[0]);
    });

    test('exclusively: of callers on both handles, one works at a time; the lock is free after a failure', async () => {
      const lock = id('lock');
      const counter = id('counter');
      let inside = 0;
      let most = 0;
      // Each caller reads, yields to the others, then writes: without the lock they interleave and lose counts.
      const increment = (handle: ControlStore) =>
        handle.exclusively(lock, async () => {
          inside += 1;
          most = Math.max(most, inside);
          const value = Number((await handle.getSetting(counter)) ?? '0');
          await new Promise((resolve) => setImmediate(resolve));
          await handle.setSetting(counter, String(value + 1));
          inside -= 1;
        });
      await Promise.all([store, other, store, other, store, other].map(increment));
      assert.equal(most, 1, 'never two callers inside at once');
      assert.equal(await store.getSetting(counter), '6');

      await assert.rejects(other.exclusively(lock, async () => { throw new Error('work failed'); }), /work failed/);
      assert.equal(await store.exclusively(lock, async () => 'free again'), 'free again');
    });
  });
}
