/**
 * The scheduler with stand-in runtimes, records and meter, on a clock the test moves: the idle
 * clock suspends an idle instance of a scale-to-zero app after idle_timeout, and never one with
 * an exchange in flight nor one of an app that keeps its instances; a wake is heard by the
 * activation listeners and restarts the meter, a suspend stops it; instances of a project are
 * counted across its serving and candidate versions. (Real drivers: test/serverless*.e2e.test.ts.)
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { pino } from 'pino';
import type { ComputeMeter } from './metering.js';
import type { AppRecord, AppRecords } from './records.js';
import type { AppRuntime, AppVersion, SlotState, VersionSlot } from './runtime.js';
import { AppScheduler, type Activation } from './scheduler.js';

const log = pino({ level: 'silent' });
let schedulers: AppScheduler[] = [];

beforeEach(() => mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 }));
afterEach(() => {
  for (const scheduler of schedulers) scheduler.stop();
  schedulers = [];
  mock.timers.reset();
});

interface FakeSlot {
  state: SlotState;
  inFlight: number;
  lastActivity: number;
  stateSince: number;
  instance: { id: string };
  suspends: number;
  suspendIfIdle(isIdle: (slot: FakeSlot) => boolean): Promise<void>;
}

function slotOf(id: string, state: SlotState, inFlight = 0): FakeSlot {
  return {
    state,
    inFlight,
    lastActivity: Date.now(),
    stateSince: Date.now(),
    instance: { id },
    suspends: 0,
    async suspendIfIdle(isIdle) {
      if (isIdle(this)) this.suspends += 1;
    },
  };
}

function runtimeOf(name: string, settings: Partial<AppRecord['settings']>, slots: FakeSlot[], candidate: FakeSlot[] = []): AppRuntime {
  const app = { id: `id-${name}`, name, projectId: 'p1', projectName: 'shop', version: 1, status: 'running', settings: { min_instances: 1, pool: 0, idle_timeout: 5, volumes: [], ...settings } } as unknown as AppRecord;
  return { app, busy: undefined, waiting: 0, serving: { slots }, candidate: candidate.length ? { slots: candidate } : undefined, liveStatus: () => 'running', system: () => undefined } as unknown as AppRuntime;
}

function schedulerOf(runtimes: AppRuntime[], meterCalls: string[] = []): AppScheduler {
  const records = { setInstanceState: async () => undefined, hereById: () => undefined } as unknown as AppRecords;
  const meter = { paused: (id: string) => meterCalls.push(`paused ${id}`), resumed: (id: string) => meterCalls.push(`resumed ${id}`) } as unknown as ComputeMeter;
  const scheduler = new AppScheduler({
    dataDir: '/nonexistent',
    log,
    records,
    runtimes: new Map(runtimes.map((runtime) => [runtime.app.id, runtime])),
    meter,
    canSnapshot: () => false,
    closing: () => false,
    graceMs: 1_000,
    memoryReserveBytes: 0,
  });
  schedulers.push(scheduler);
  return scheduler;
}

test('the idle clock suspends idle instances of scale-to-zero apps only, never one with an exchange in flight', () => {
  const idle = slotOf('i1', 'running');
  const busy = slotOf('i2', 'running', 1);
  const kept = slotOf('i3', 'running');
  schedulerOf([runtimeOf('sleepy', { min_instances: 0, max_instances: 2 }, [idle, busy]), runtimeOf('steady', { min_instances: 1 }, [kept])]);
  mock.timers.tick(4_900);
  assert.equal(idle.suspends, 0, 'not before idle_timeout');
  mock.timers.tick(200);
  assert.deepEqual([idle.suspends > 0, busy.suspends, kept.suspends], [true, 0, 0]);
});

test('a wake is heard by the activation listeners and restarts the meter; a suspend stops it', () => {
  const slot = slotOf('i1', 'running');
  const runtime = runtimeOf('web', { min_instances: 0 }, [slot]);
  const meterCalls: string[] = [];
  const scheduler = schedulerOf([runtime], meterCalls);
  const heard: Activation[] = [];
  scheduler.onActivation((activation) => heard.push(activation));
  const version = { version: 1, slots: [slot], runtime } as unknown as AppVersion;
  const reported = Object.assign(slot, { host: version }) as unknown as VersionSlot;
  const instance = slot.instance as unknown as NonNullable<VersionSlot['instance']>;
  scheduler.lifecycleChanged(reported, { from: 'running', to: 'suspended', instance, ms: 1 });
  scheduler.lifecycleChanged(reported, { from: 'suspended', to: 'running', instance, ms: 0.6 });
  assert.deepEqual(meterCalls, ['paused i1', 'resumed i1']);
  assert.deepEqual(heard, [{ app: 'web', project: 'shop', from: 'suspended', ms: 0.6 }]);
});

test('instances of a project count across serving and candidate versions, not stopped ones', () => {
  const scheduler = schedulerOf([runtimeOf('web', {}, [slotOf('i1', 'running'), slotOf('i2', 'stopped')], [slotOf('i3', 'starting')])]);
  assert.equal(scheduler.instancesOfProject('p1'), 2);
  assert.equal(scheduler.instancesOfProject('p2'), 0);
  assert.equal(scheduler.queueDepth(), 0);
});
