/**
 * @module store/cron/contract
 * The behaviour every cron store adapter must have, as one node:test suite;
 * `cron.contract.test.ts` runs it per adapter. `other` is a second store on the same data, as
 * another process would open it: claims and signing secrets must agree across the two.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { RUNS_KEPT, type CronStore, type JobRecord, type RunClaim, type RunRecord } from './port.js';

export interface CronAdapterUnderTest {
  store: CronStore;
  /** Another store on the same data, as a second process sees it. */
  other: CronStore;
  /** Removes whatever the suite left behind (a database file, a database). */
  dispose(): Promise<void>;
}

export function runCronStoreContract(name: string, open: () => Promise<CronAdapterUnderTest>): void {
  describe(`cron store contract: ${name}`, () => {
    let adapter: CronAdapterUnderTest;
    let store: CronStore;
    const run = randomBytes(4).toString('hex');
    const namespace = (label: string) => `project-${run}-${label}/production`;
    const job = (ns: string, id: string, changes: Partial<JobRecord> = {}): JobRecord => ({
      namespace: ns,
      id,
      name: `job ${id}`,
      description: '',
      interval: '* * * * *',
      callback: 'https://example.com/hook',
      nextRun: 1_800_000_000_000,
      ...changes,
    });
    const held = (owner: string, until = 1_900_000_000_000): RunClaim => ({ owner, until });
    const finished = (scheduledAt: number, changes: Partial<RunRecord> = {}): RunRecord => ({
      scheduledAt,
      finishedAt: scheduledAt + 5,
      status: 'succeeded',
      httpCode: 200,
      attempts: 1,
      error: '',
      ...changes,
    });

    before(async () => {
      adapter = await open();
      store = adapter.store;
    });
    after(() => adapter.dispose());

    test('save, list in creation order, replace keeping the place, delete with its runs', async () => {
      const ns = namespace('basic');
      assert.deepEqual(await store.list(ns), []);
      await store.save(job(ns, 'b', { description: 'ünïcødé 🚀', nextRun: null }), 1_000);
      await store.save(job(ns, 'a'), 1_000);
      await store.save(job(ns, 'c'), 500);
      assert.deepEqual((await store.list(ns)).map((each) => each.id), ['c', 'a', 'b'], 'by creation, then id in byte order');
      assert.deepEqual((await store.list(ns))[2], job(ns, 'b', { description: 'ünïcødé 🚀', nextRun: null }));
      const replaced = job(ns, 'c', { name: 'renamed', interval: '0 3 * * *', callback: 'app://web/cron', nextRun: 1_900_000_000_123 });
      await store.save(replaced, 9_000);
      assert.deepEqual((await store.list(ns))[0], replaced, 'replaced in place, times to the millisecond');
      await store.recordRun(ns, 'c', finished(1));
      assert.equal(await store.delete(ns, 'c'), true);
      assert.equal(await store.delete(ns, 'c'), false);
      assert.deepEqual((await store.list(ns)).map((each) => each.id), ['a', 'b']);
      await store.save(job(ns, 'c'), 10_000);
      assert.deepEqual(await store.runs(ns, 'c'), [], 'a job made again under a deleted id starts without runs');
    });

    test('due: every namespace, at or before now, earliest first, limited; never a job that does not fire', async () => {
      const early = namespace('due-a');
      const late = namespace('due-b');
      // Far in the past, so other tests' jobs (due in 2027) are not among them.
      await store.save(job(late, 'second', { nextRun: 2_000 }), 0);
      await store.save(job(early, 'first', { nextRun: 1_000 }), 0);
      await store.save(job(early, 'exactly-now', { nextRun: 3_000 }), 0);
      await store.save(job(early, 'later', { nextRun: 3_001 }), 0);
      await store.save(job(early, 'never', { nextRun: null }), 0);
      assert.deepEqual((await store.due(3_000, 100)).map((each) => each.id), ['first', 'second', 'exactly-now']);
      assert.deepEqual((await store.due(3_000, 2)).map((each) => each.id), ['first', 'second']);
      assert.deepEqual(await store.due(999, 100), []);
      assert.deepEqual((await store.due(3_000, 1))[0], job(early, 'first', { nextRun: 1_000 }));
      for (const each of await store.due(10_000, 100)) await store.delete(each.namespace, each.id);
    });

    test('claim: exactly one of many racing claimers, in this process and another, wins a run', async () => {
      const ns = namespace('claim');
      const due = job(ns, 'tick', { nextRun: 5_000 });
      await store.save(due, 0);
      const claims = await Promise.all(
        Array.from({ length: 12 }, (_, index) => (index % 2 ? adapter.other : store).claim(due, 5_000, 6_000, held(`claimer-${index}`))),
      );
      assert.equal(claims.filter(Boolean).length, 1, `one winner: ${claims}`);
      assert.equal((await store.list(ns))[0].nextRun, 6_000);
      assert.equal(await store.claim(due, 5_000, 6_000, held('late')), false, 'an old expectation fails');
      assert.equal(await store.claim(due, 6_000, null, held('last')), true, 'a job may stop firing');
      assert.equal((await adapter.other.list(ns))[0].nextRun, null);
      assert.deepEqual((await store.due(10_000, 100)).filter((each) => each.namespace === ns), []);
      assert.equal(await store.claim(job(ns, 'missing'), 5_000, 6_000, held('nobody')), false);
      await store.delete(ns, 'tick');
    });

    test('a claimed run stays claimed until recorded; once its claim runs out one other process takes it over', async () => {
      const ns = namespace('abandoned');
      const mine = (runs: Awaited<ReturnType<CronStore['abandonedRuns']>>) => runs.filter((each) => each.job.namespace === ns);
      const due = job(ns, 'tick', { nextRun: 5_000 });
      await store.save(due, 0);
      assert.equal(await store.claim(due, 5_000, 6_000, held('dies', 20_000)), true);
      assert.deepEqual(mine(await adapter.other.abandonedRuns(19_999, 100)), [], 'not before its claim runs out');
      assert.deepEqual(mine(await adapter.other.abandonedRuns(20_000, 100)), [{ job: { ...due, nextRun: 6_000 }, scheduledAt: 5_000 }]);
      assert.equal(await store.claim(due, 6_000, 7_000, held('lives', 20_000)), true);
      assert.equal(await store.renewClaims('lives', 40_000), 1, 'the owner renews what it holds');
      assert.equal(await store.renewClaims('nobody', 40_000), 0);
      assert.deepEqual(mine(await store.abandonedRuns(30_000, 100)).map((each) => each.scheduledAt), [5_000], 'a renewed claim holds');
      assert.equal(await store.reclaim(ns, 'tick', 6_000, 30_000, held('thief', 50_000)), false, 'a live claim is not taken');

      const takers = await Promise.all(
        Array.from({ length: 12 }, (_, index) =>
          (index % 2 ? adapter.other : store).reclaim(ns, 'tick', 5_000, 30_000, held(`taker-${index}`, 50_000)),
        ),
      );
      assert.equal(takers.filter(Boolean).length, 1, `one taker: ${takers}`);
      assert.deepEqual(mine(await store.abandonedRuns(30_000, 100)), [], 'taken over, the run is claimed again');
      assert.deepEqual(mine(await store.abandonedRuns(50_000, 100)).map((each) => each.scheduledAt), [5_000, 6_000], 'earliest first');
      assert.deepEqual(mine(await store.abandonedRuns(50_000, 1)).map((each) => each.scheduledAt), [5_000], 'limited');

      await adapter.other.recordRun(ns, 'tick', finished(5_000));
      assert.deepEqual(mine(await store.abandonedRuns(Number.MAX_SAFE_INTEGER, 100)).map((each) => each.scheduledAt), [6_000], 'recording a run ends its claim');
      await store.releaseClaims('lives');
      assert.deepEqual(mine(await adapter.other.abandonedRuns(1, 100)).map((each) => each.scheduledAt), [6_000], 'a released claim is free at once');
      assert.equal(await adapter.other.reclaim(ns, 'tick', 6_000, 1, held('heir')), true);
      await store.delete(ns, 'tick');
      assert.deepEqual(mine(await store.abandonedRuns(Number.MAX_SAFE_INTEGER, 100)), [], 'a deleted job leaves no claims');
      assert.equal(await store.reclaim(ns, 'tick', 6_000, Number.MAX_SAFE_INTEGER, held('late')), false);
    });

    test(`runs: newest first, the last ${RUNS_KEPT} kept, one per scheduled time; none for a deleted job`, async () => {
      const ns = namespace('runs');
      await store.save(job(ns, 'j'), 0);
      await store.save(job(ns, 'k'), 0);
      for (let at = 1; at <= RUNS_KEPT + 5; at++) await store.recordRun(ns, 'j', finished(at * 1_000_000_000_000));
      await store.recordRun(ns, 'k', finished(7, { status: 'refused', httpCode: 0, attempts: 1, error: 'private address' }));
      const runs = await store.runs(ns, 'j');
      assert.equal(runs.length, RUNS_KEPT);
      assert.deepEqual(runs[0], finished((RUNS_KEPT + 5) * 1_000_000_000_000));
      assert.equal(runs.at(-1)!.scheduledAt, 6_000_000_000_000);
      await store.recordRun(ns, 'k', finished(7, { status: 'failed', httpCode: 503, attempts: 4, error: 'Service Unavailable' }));
      assert.deepEqual(await store.runs(ns, 'k'), [finished(7, { status: 'failed', httpCode: 503, attempts: 4, error: 'Service Unavailable' })]);
      await store.delete(ns, 'k');
      await store.recordRun(ns, 'k', finished(8));
      assert.deepEqual(await store.runs(ns, 'k'), [], 'a run finishing after its job was deleted is not kept');
      assert.deepEqual(await store.runs(namespace('runs-other'), 'j'), [], 'runs are per namespace');
    });

    test('signing secret: made once, the same for racing callers in both processes, kept as given', async () => {
      const ns = namespace('secret');
      let made = 0;
      const create = () => `whsec_${++made}_${randomBytes(8).toString('hex')}`;
      const answers = await Promise.all(Array.from({ length: 8 }, (_, index) => (index % 2 ? adapter.other : store).signingSecret(ns, create)));
      assert.equal(new Set(answers).size, 1, 'one secret');
      assert.match(answers[0], /^whsec_\d+_[0-9a-f]{16}$/);
      assert.equal(await store.signingSecret(ns, () => assert.fail('not made again')), answers[0]);
      assert.notEqual(await store.signingSecret(namespace('secret-other'), create), answers[0], 'one per namespace');
    });

    test('rewriteSigningSecrets replaces where asked and leaves the rest', async () => {
      const ns = namespace('rewrite');
      const kept = namespace('rewrite-kept');
      await store.signingSecret(ns, () => 'plain');
      await store.signingSecret(kept, () => 'sealed:already');
      const seen = new Map<string, string>();
      const replaced = await store.rewriteSigningSecrets((each, stored) => {
        seen.set(each, stored);
        return stored.startsWith('sealed:') ? undefined : `sealed:${stored}`;
      });
      assert.equal(seen.get(ns), 'plain');
      assert.equal(seen.get(kept), 'sealed:already');
      assert.ok(replaced >= 1);
      assert.equal(await store.signingSecret(ns, () => assert.fail('exists')), 'sealed:plain');
      assert.equal(await store.signingSecret(kept, () => assert.fail('exists')), 'sealed:already');
      assert.equal(await store.rewriteSigningSecrets((each, stored) => (stored.startsWith('sealed:') ? undefined : 'x')), 0);
    });

    test('deleteProject forgets jobs, runs, claims and secrets of every environment of that project only', async () => {
      const project = `proj-${run}`;
      for (const ns of [`${project}/production`, `${project}/development`, `${project}0/production`]) {
        await store.save(job(ns, 'j'), 0);
        await store.recordRun(ns, 'j', finished(1));
        await store.signingSecret(ns, () => `secret of ${ns}`);
        await store.claim(job(ns, 'j'), 1_800_000_000_000, null, held('claimer', 0));
      }
      await store.deleteProject(project);
      for (const ns of [`${project}/production`, `${project}/development`]) {
        assert.deepEqual(await store.list(ns), []);
        assert.deepEqual(await store.runs(ns, 'j'), []);
        assert.equal(await store.signingSecret(ns, () => 'new'), 'new');
      }
      const claimed = (await store.abandonedRuns(Number.MAX_SAFE_INTEGER, 1_000)).map((each) => each.job.namespace);
      assert.deepEqual(claimed.filter((ns) => ns.startsWith(project)), [`${project}0/production`], 'only the neighbour keeps its claim');
      const neighbour = `${project}0/production`;
      assert.equal((await store.list(neighbour)).length, 1);
      assert.equal((await store.runs(neighbour, 'j')).length, 1);
      assert.equal(await store.signingSecret(neighbour, () => 'new'), `secret of ${neighbour}`);
    });
  });
}
