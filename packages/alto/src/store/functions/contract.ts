/**
 * @module store/functions/contract
 * The behaviour every functions store adapter must have, as one node:test suite;
 * `functions.contract.test.ts` runs it per adapter. `other` is a second store on the same data,
 * as another process would open it: what one writes the other reads, and a name is taken once
 * across both.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { TwoStores } from '../two-processes.js';
import type { FunctionRecord, FunctionStore } from './port.js';

export function runFunctionStoreContract(name: string, open: () => Promise<TwoStores<FunctionStore>>): void {
  describe(`functions store contract: ${name}`, () => {
    let adapter: TwoStores<FunctionStore>;
    let store: FunctionStore;
    let other: FunctionStore;
    const run = randomBytes(4).toString('hex');
    const project = (label: string) => `project-${run}-${label}`;
    const fn = (projectId: string, functionName: string, changes: Partial<FunctionRecord> = {}): FunctionRecord => ({
      id: randomBytes(8).toString('hex'),
      projectId,
      name: functionName,
      runtime: 'nodejs',
      entrypoint: '',
      sourceKind: 'inline',
      source: 'export default () => new Response("ünïcødé 🚀");\n',
      repo: '',
      branch: '',
      subfolder: '',
      envVars: { GREETING: 'hi', EMPTY: '', QUOTES: `"'\\` },
      image: `functions.alto.internal/${projectId}/${functionName}@sha256:${'a'.repeat(64)}`,
      buildLog: 'bundled index.ts\nimage sha256:…',
      keyId: 'key-1',
      keySecret: 'sealed:v1:opaque',
      environment: 'dev',
      secrets: ['stripe-key', 'db'],
      sourceArchive: 'f00d/archive.tar.gz',
      createdAt: 1_800_000_000_123,
      updatedAt: 1_800_000_000_456,
      ...changes,
    });

    before(async () => {
      adapter = await open();
      store = adapter.store;
      other = adapter.other;
    });
    after(() => adapter.dispose());

    test('insert, then find by project and name and get by id in both processes, every field as written', async () => {
      const projectId = project('basic');
      const written = fn(projectId, 'greeter');
      assert.equal(await store.find(projectId, 'dev', 'greeter'), undefined);
      assert.equal(await store.insert(written), true);
      assert.deepEqual(await store.find(projectId, 'dev', 'greeter'), written);
      assert.deepEqual(await other.find(projectId, 'dev', 'greeter'), written, 'the other process reads it');
      assert.deepEqual(await other.get(written.id), written);
      assert.equal(await store.get('no-such-id'), undefined);
      assert.equal(await store.find(project('elsewhere'), 'dev', 'greeter'), undefined, 'per project');
      const bare = fn(projectId, 'bare', { envVars: {}, secrets: [], keyId: '', keySecret: '', sourceArchive: '', sourceKind: 'repo', source: '', repo: 'https://example.com/r.git', branch: 'main', subfolder: 'fns/a' });
      assert.equal(await store.insert(bare), true);
      assert.deepEqual(await other.find(projectId, 'dev', 'bare'), bare);
    });

    test('a name is taken once per project, also by racing inserts in two processes; another project may use it', async () => {
      const projectId = project('names');
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, index) => (index % 2 ? other : store).insert(fn(projectId, 'racer', { buildLog: `writer ${index}` }))),
      );
      assert.equal(answers.filter(Boolean).length, 1, `one insert wins: ${answers}`);
      const kept = await store.find(projectId, 'dev', 'racer');
      assert.equal(kept?.buildLog, `writer ${answers.indexOf(true)}`, 'the winner is the one stored');
      assert.equal(await store.insert(fn(projectId, 'racer')), false);
      assert.equal((await other.listOfProject(projectId)).length, 1);
      assert.equal(await other.insert(fn(project('names-other'), 'racer')), true);
    });

    test('list: the project\'s functions by name in byte order, none of another project', async () => {
      const projectId = project('list');
      for (const each of ['web', 'api-2', 'api', 'b0', 'a-z']) await store.insert(fn(projectId, each));
      await store.insert(fn(`${projectId}0`, 'neighbour'));
      assert.deepEqual((await other.listOfProject(projectId)).map((each) => each.name), ['a-z', 'api', 'api-2', 'b0', 'web']);
      assert.deepEqual(await store.listOfProject(project('empty')), []);
    });

    test('update replaces all but id, project, name and creation time; setBuildLog changes the log only', async () => {
      const projectId = project('update');
      const first = fn(projectId, 'changing');
      await store.insert(first);
      const next = fn(projectId, 'changing', {
        id: first.id,
        entrypoint: 'main',
        sourceKind: 'files',
        source: '',
        envVars: { ONLY: 'this' },
        image: `functions.alto.internal/${projectId}/changing@sha256:${'b'.repeat(64)}`,
        buildLog: 'second build',
        keyId: 'key-2',
        keySecret: 'sealed:v1:other',
        environment: 'prod',
        secrets: [],
        sourceArchive: 'f00d/second.tar.gz',
        createdAt: 1,
        updatedAt: 1_900_000_000_789,
      });
      assert.equal(await other.update(next), true);
      assert.deepEqual(await store.get(first.id), { ...next, createdAt: first.createdAt });
      assert.equal(await store.update(fn(projectId, 'changing', { id: 'gone' })), false, 'no such id');
      assert.equal(await store.update({ ...next, projectId: project('moved'), name: 'renamed' }), true);
      assert.deepEqual(await other.find(projectId, 'prod', 'changing'), { ...next, createdAt: first.createdAt }, 'project and name stay');

      await other.setBuildLog(first.id, 'the build failed; the previous version keeps serving');
      assert.deepEqual(await store.get(first.id), { ...next, createdAt: first.createdAt, buildLog: 'the build failed; the previous version keeps serving' });
    });

    test('a name is unique per project and environment: the same name in two environments, each found and listed in its own', async () => {
      const projectId = project('environments');
      const dev = fn(projectId, 'api');
      const staging = fn(projectId, 'api', { id: `${dev.id}-staging`, environment: 'staging' });
      assert.equal(await store.insert(dev), true);
      assert.equal(await other.insert(staging), true);
      assert.equal(await store.insert(fn(projectId, 'api', { id: `${dev.id}-again`, environment: 'staging' })), false);
      assert.equal((await store.find(projectId, 'staging', 'api'))?.id, staging.id);
      assert.equal((await other.find(projectId, 'dev', 'api'))?.id, dev.id);
      assert.deepEqual((await store.listOfProject(projectId, 'staging')).map((each) => each.id), [staging.id]);
      assert.deepEqual((await store.listOfProject(projectId)).map((each) => each.environment), ['dev', 'staging'], 'without an environment: all of them');
    });

    test('delete once; deleteProject forgets that project\'s functions only', async () => {
      const projectId = project('delete');
      const doomed = fn(projectId, 'doomed');
      await store.insert(doomed);
      assert.equal(await other.delete(doomed.id), true);
      assert.equal(await store.delete(doomed.id), false);
      assert.equal(await store.find(projectId, 'dev', 'doomed'), undefined);
      assert.equal(await store.insert(fn(projectId, 'doomed')), true, 'the name is free again');

      const gone = project('gone');
      await store.insert(fn(gone, 'a'));
      await store.insert(fn(gone, 'b'));
      await store.insert(fn(`${gone}0`, 'a'));
      await other.deleteProject(gone);
      assert.deepEqual(await store.listOfProject(gone), []);
      assert.equal((await store.listOfProject(`${gone}0`)).length, 1);
    });

    test('rewriteKeySecrets replaces where asked, offers no empty secret, and leaves the rest', async () => {
      const projectId = project('rewrite');
      const plain = fn(projectId, 'plain', { keySecret: 'alto_plain' });
      const sealed = fn(projectId, 'sealed', { keySecret: 'sealed:already' });
      const keyless = fn(projectId, 'keyless', { keyId: '', keySecret: '' });
      for (const each of [plain, sealed, keyless]) await store.insert(each);
      const offered = new Map<string, string>();
      const replaced = await other.rewriteKeySecrets((id, stored) => {
        offered.set(id, stored);
        return stored.startsWith('sealed:') ? undefined : `sealed:${stored}`;
      });
      assert.ok(replaced >= 1);
      assert.equal(offered.get(plain.id), 'alto_plain');
      assert.equal(offered.get(sealed.id), 'sealed:already');
      assert.equal(offered.has(keyless.id), false);
      assert.equal((await store.get(plain.id))?.keySecret, 'sealed:alto_plain');
      assert.equal((await store.get(sealed.id))?.keySecret, 'sealed:already');
      assert.equal(await store.rewriteKeySecrets((_id, stored) => (stored.startsWith('sealed:') ? undefined : 'x')), 0);
    });
  });
}
