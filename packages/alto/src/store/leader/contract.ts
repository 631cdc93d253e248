/**
 * @module store/leader/contract
 * The behaviour every singleton adapter must have, as one node:test suite;
 * `leader.contract.test.ts` runs it per adapter. Handles are opened on the same data as separate
 * processes would open them, and `kill` ends one as a crash would: its connection gone, nothing
 * released.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { SingletonLock } from './port.js';

export interface SingletonAdapterUnderTest {
  /** A new handle on the same data, as another process opens it. */
  open(): Promise<SingletonLock>;
  /** Ends a handle as a crash would: its connection to the store dies and it releases nothing. */
  kill(lock: SingletonLock): Promise<void>;
  /** How long a live holder is watched keeping its role (past a lease, where there are leases). */
  watchMs: number;
  dispose(): Promise<void>;
}

/** Polls `condition` until it holds, failing after `timeoutMs`. */
async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function runSingletonContract(name: string, open: () => Promise<SingletonAdapterUnderTest>): void {
  describe(`singleton contract: ${name}`, () => {
    let adapter: SingletonAdapterUnderTest;
    const handles: SingletonLock[] = [];
    const run = randomBytes(4).toString('hex');
    const role = (label: string) => `test-${run}-${label}`;
    const handle = async () => {
      const lock = await adapter.open();
      handles.push(lock);
      return lock;
    };

    before(async () => {
      adapter = await open();
    });
    after(async () => {
      for (const lock of handles) await lock.close();
      await adapter.dispose();
    });

    test('of many handles asking at once, exactly one holds a role; asking again keeps it; roles are independent', async () => {
      const many = await Promise.all(Array.from({ length: 6 }, handle));
      const answers = await Promise.all(many.map((lock) => lock.tryHold(role('race'))));
      assert.equal(answers.filter(Boolean).length, 1, `one holder: ${answers}`);
      const holder = many[answers.indexOf(true)];
      const others = many.filter((lock) => lock !== holder);
      assert.equal(await holder.holds(role('race')), true);
      assert.equal(await holder.tryHold(role('race')), true, 'the holder asking again still holds it');
      for (const other of others) {
        assert.equal(await other.tryHold(role('race')), false);
        assert.equal(await other.holds(role('race')), false);
      }
      assert.equal(await others[0].tryHold(role('race-other')), true, 'another role is held apart');
      assert.equal(await holder.tryHold(role('race-other')), false);
    });

    test('a live holder keeps its role while others keep asking', async () => {
      const [holder, other] = [await handle(), await handle()];
      assert.equal(await holder.tryHold(role('kept')), true);
      const watchedUntil = Date.now() + adapter.watchMs;
      await until(async () => {
        assert.equal(await other.tryHold(role('kept')), false, 'never two holders');
        assert.equal(await holder.holds(role('kept')), true);
        return Date.now() > watchedUntil;
      }, 'the watch to end');
    });

    test('released, a role is taken by the next handle to ask', async () => {
      const [holder, other] = [await handle(), await handle()];
      assert.equal(await holder.tryHold(role('released')), true);
      assert.equal(await other.tryHold(role('released')), false);
      await holder.release(role('released'));
      assert.equal(await holder.holds(role('released')), false);
      assert.equal(await other.tryHold(role('released')), true);
      assert.equal(await holder.tryHold(role('released')), false);
    });

    test('when the holder dies, its role moves to another handle, never to two', async () => {
      const [doomed, first, second] = [await handle(), await handle(), await handle()];
      assert.equal(await doomed.tryHold(role('moves')), true);
      await adapter.kill(doomed);
      let taker: SingletonLock | undefined;
      await until(async () => {
        const [a, b] = await Promise.all([first.tryHold(role('moves')), second.tryHold(role('moves'))]);
        assert.ok(!(a && b), 'never two holders');
        taker = a ? first : b ? second : undefined;
        return taker !== undefined;
      }, 'the role to move from the dead holder');
      assert.equal(await doomed.holds(role('moves')), false, 'the dead handle knows it lost the role');
      assert.equal(await taker!.holds(role('moves')), true);
      assert.equal(await (taker === first ? second : first).tryHold(role('moves')), false);
    });

    test('closing a handle gives up its roles', async () => {
      const [closing, other] = [await adapter.open(), await handle()];
      assert.equal(await closing.tryHold(role('closed')), true);
      assert.equal(await other.tryHold(role('closed')), false);
      await closing.close();
      assert.equal(await other.tryHold(role('closed')), true);
    });
  });
}
