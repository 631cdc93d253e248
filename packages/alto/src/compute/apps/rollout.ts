/**
 * @module compute/apps/rollout
 * Starting an app's versions and moving traffic between them. A version gets one slot per
 * instance position and starts them together, or, where it takes a ready snapshot, boots the
 * first and restores the others from it; a version that never becomes ready is stopped and
 * answered with its instances' last log lines. Update rolls out without downtime: the new
 * version must be ready before traffic moves to it, then the old one drains and stops; with
 * volumes, old first (a volume has one user at a time), the old one put back when the new fails.
 * At a start of Alto, an app's version comes back as the previous run left it.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AltoError, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { ImageManager } from '../images/manager.js';
import type { ImageSpec } from '../images/spec.js';
import type { ComputeMeter, MeteredOwner } from './metering.js';
import type { Placement } from './placement.js';
import type { AppRecord, AppRecords, AppSettings } from './records.js';
import type { ImageOwner, RootFilesystems } from './rootfs.js';
import { AppVersion, type AppRuntime } from './runtime.js';
import type { AppScheduler } from './scheduler.js';
import { assertLinks, settingsOf, startOf, type AppSettingsInput, type AppSpecs } from './spec.js';

/** How long an update waits for requests in flight on the old version before stopping it. */
export const DRAIN_MS = 10_000;
/** The slot number under which a version's ready snapshot is recorded. */
const READY_SNAPSHOT_SLOT = -1;
/** Log lines an error about a failed start carries. */
const FAILURE_LOG_LINES = 10;

/** A setting app/Update can return to its default (schema.ts, RESETTABLE_SETTINGS). */
export type ResettableSetting = 'entrypoint' | 'command' | 'health_check' | 'stop_signal' | 'stop_timeout' | 'link_aliases';

export interface UpdateInput extends AppSettingsInput {
  name: string;
  image?: string;
  insecure?: boolean;
  /** env_vars replace the app's instead of adding to them (functions give their whole set). */
  replaceEnvVars?: boolean;
  /** Settings returned to their default, unless given here too. */
  reset?: readonly ResettableSetting[];
}

/** Who updates: the project (its images, its caps) and whether the key is the admin's. */
export type RolloutOwner = ImageOwner & MeteredOwner;

export interface RolloutsOptions {
  dataDir: string;
  log: Logger;
  records: AppRecords;
  images: ImageManager;
  rootfs: RootFilesystems;
  placement: Placement;
  meter: ComputeMeter;
  specs: AppSpecs;
  /** How many instance positions a version keeps, and which of them sleep when idle. */
  scheduler: Pick<AppScheduler, 'positions' | 'sleepsWhenIdleAt'>;
  graceMs: number;
  /** The app's TCP settings changed: its edge port closes and opens again. */
  reopenTcp(runtime: AppRuntime): Promise<void>;
}

export class Rollouts {
  constructor(private readonly options: RolloutsOptions) {}

  /** A version of the app, one slot per instance position, none started. */
  newVersion(runtime: AppRuntime, app: AppRecord, image: ImageSpec, rootfs: string): AppVersion {
    const version = new AppVersion(app.version, this.options.specs.specOf(app, image, rootfs), runtime, () => this.options.placement.place(startOf(app)));
    for (let i = 0; i < this.options.scheduler.positions(app.settings); i++) version.addSlot();
    return version;
  }

  /**
   * At a start of Alto: the app's version serves again as the previous run left it. Slots
   * snapshotted then come back on their next request (only snapshots this node took, its
   * `ownSnapshots`); the rest start, restored from the version's ready snapshot when it has one.
   */
  async restart(runtime: AppRuntime, ownSnapshots = true): Promise<void> {
    const { app } = runtime;
    const image = this.options.images.inspect(app.digest);
    const rootfs = await this.options.rootfs.ensure(app.digest);
    const version = this.newVersion(runtime, app, image.spec, rootfs);
    runtime.serve(version);
    const snapshots = ownSnapshots ? await this.options.records.snapshotsOf(app.id) : [];
    const ready = snapshots.find((candidate) => candidate.version === app.version && candidate.slot === READY_SNAPSHOT_SLOT);
    if (ready && existsSync(join(ready.dir, 'snapshot.json'))) version.readySnapshot = ready.dir;
    for (const [index, slot] of version.slots.entries()) {
      const snapshot = snapshots.find((candidate) => candidate.version === app.version && candidate.slot === index);
      if (snapshot && this.options.scheduler.sleepsWhenIdleAt(app, index) && existsSync(join(snapshot.dir, 'snapshot.json'))) {
        slot.startSnapshotted(snapshot.dir, snapshot.dir !== ready?.dir);
        runtime.system(app.version, '', `instance ${index + 1} stays snapshotted until its next request (${snapshot.dir})`);
      } else slot.startSupervised();
    }
  }

  /** Starts every instance of a version; rejects with what went wrong when one never becomes ready. */
  async startVersion(runtime: AppRuntime, version: AppVersion): Promise<void> {
    // With a ready snapshot, the first instance boots and the others are copies of it.
    await this.options.placement.place(startOf({ ...runtime.app, version: version.version })).catch(() => undefined);
    const first = this.takesReadySnapshot(runtime.app) && version.slots.length > 1 ? version.slots.slice(0, 1) : version.slots;
    const results = await Promise.allSettled(first.map((slot) => slot.startFirst()));
    if (first !== version.slots && results[0].status === 'fulfilled') {
      await this.captureReadySnapshot(runtime, version);
      results.push(...(await Promise.allSettled(version.slots.slice(1).map((slot) => slot.startFirst()))));
    }
    const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failures.length === 0) return;
    await version.stop(this.options.graceMs);
    const error = failures[0].reason as Error;
    if (isAltoError(error) && error.status < 500 && error.status !== 400) throw error;
    // What the failed instances wrote goes to the app's log; the first one's last lines into the answer.
    const written = failures.map((failed) => runtime.recordFailedStart(version, failed.reason));
    const fallback = runtime.tail(FAILURE_LOG_LINES * 4).filter((line) => line.version === version.version && line.stream !== 'system');
    const lines = (written[0].length > 0 ? written[0] : fallback).slice(-FAILURE_LOG_LINES).map((line) => line.line);
    const detail = isAltoError(error) ? error.detail : error.message;
    const logs = lines.length > 0 ? `; its last log lines:\n${lines.join('\n')}` : '';
    const status = isAltoError(error) && error.status === 503 ? 503 : 400;
    throw new AltoError(status === 503 ? 'unavailable' : 'bad_request', status, `version ${version.version} of app "${runtime.app.name}" did not become ready: ${detail}${logs}`);
  }

  /**
   * Update: the next version of `current` with the input's image and settings, ready before
   * traffic moves to it; the old version then drains and stops. Resolves with the app's new record.
   */
  async update(owner: RolloutOwner, runtime: AppRuntime, current: AppRecord, input: UpdateInput): Promise<AppRecord> {
    const { images, rootfs, records, specs, graceMs } = this.options;
    assertLinks(current.name, input.links);
    await specs.assertDriverSupports(startOf({ ...current, version: current.version + 1 }), { outbound: input.outbound ?? current.settings.outbound });
    const image = input.image ? await rootfs.imageFor(owner, input.image, Boolean(input.insecure), 'always') : images.inspect(current.digest);
    const base: AppSettings = input.replaceEnvVars ? { ...current.settings, env_vars: {} } : { ...current.settings };
    for (const key of input.reset ?? []) delete base[key];
    const settings = settingsOf(input, base, image.spec);
    const unpacked = await rootfs.ensure(image.digest);
    const next: AppRecord = {
      ...current,
      image: input.image?.trim() ?? current.image,
      digest: image.digest,
      settings,
      version: current.version + 1,
      updatedAt: Date.now(),
    };
    images.addUser(image.digest, `app:${current.id}`);
    const version = this.newVersion(runtime, next, image.spec, unpacked);
    const old = runtime.serving;
    const oneUserAtATime = current.settings.volumes.length > 0 || settings.volumes.length > 0;
    try {
      if (oneUserAtATime) {
        // A volume has one user at a time: the old version stops before the new one starts.
        runtime.serve(undefined);
        runtime.system(current.version, '', `stopping version ${current.version} before version ${next.version} starts (the app has volumes)`);
        await old?.stop(graceMs, DRAIN_MS);
        runtime.candidate = version;
        try {
          await this.startVersion(runtime, version);
        } catch (error) {
          runtime.candidate = undefined;
          // Put the working version back.
          const previousImage = images.inspect(current.digest);
          const restored = this.newVersion(runtime, current, previousImage.spec, await rootfs.ensure(current.digest));
          runtime.serve(restored);
          for (const slot of restored.slots) slot.startSupervised();
          throw error;
        }
      } else {
        await this.options.meter.assertCaps(owner, { apps: 0, instances: 0 });
        runtime.candidate = version;
        await this.startVersion(runtime, version);
      }
    } catch (error) {
      runtime.candidate = undefined;
      if (image.digest !== current.digest) {
        images.removeUser(image.digest, `app:${current.id}`);
        await rootfs.dropIfUnused(image.digest);
      }
      runtime.system(next.version, '', `update to version ${next.version} failed; version ${current.version} keeps serving: ${(error as Error).message.split('\n')[0]}`);
      throw error;
    }
    // The new version is ready: traffic moves to it, then the old one drains and stops.
    runtime.candidate = undefined;
    runtime.serve(version);
    runtime.app = next;
    runtime.lastExit = undefined;
    next.status = 'running';
    next.error = undefined;
    await records.save(next);
    runtime.system(next.version, '', `version ${next.version} serves; version ${current.version} stops`);
    if (!oneUserAtATime) await old?.stop(graceMs, DRAIN_MS);
    await this.dropSnapshots(next, current.version);
    if (current.settings.tcp !== settings.tcp || current.settings.tcp_port !== settings.tcp_port) await this.options.reopenTcp(runtime);
    if (image.digest !== current.digest) {
      images.removeUser(current.digest, `app:${current.id}`);
      await rootfs.dropIfUnused(current.digest);
    }
    this.options.log.info({ app: next.name, project: next.projectName, version: next.version, digest: next.digest }, 'app updated');
    return next;
  }

  /** Removes the snapshots of one version of an app (or of all its versions). */
  async dropSnapshots(app: AppRecord, version?: number): Promise<void> {
    const { records, dataDir } = this.options;
    const snapshots = (await records.snapshotsOf(app.id)).filter((snapshot) => version === undefined || snapshot.version === version);
    await records.removeSnapshots(app.id, version);
    await Promise.all(snapshots.map((snapshot) => rm(snapshot.dir, { recursive: true, force: true })));
    if (version === undefined) await rm(join(dataDir, 'apps', 'snapshots', app.id), { recursive: true, force: true });
  }

  /** Where a version's ready snapshot is kept (recorded as slot -1). */
  private readySnapshotDir(app: AppRecord, version: number): string {
    return join(this.options.dataDir, 'apps', 'snapshots', app.id, `v${version}-ready`);
  }

  /**
   * Whether a version takes a ready snapshot: the driver can snapshot, the app has no volumes (a
   * copy would be a second writer) and may run more than one instance (scale-out, pool spares).
   */
  private takesReadySnapshot(app: AppRecord): boolean {
    return this.options.placement.canSnapshot && app.settings.volumes.length === 0 && app.settings.max_instances > 1;
  }

  /**
   * Writes the version's ready snapshot from its first instance, just ready and not serving yet;
   * the version's later instances are restored from it. A failure only costs their speed: they boot.
   */
  private async captureReadySnapshot(runtime: AppRuntime, version: AppVersion): Promise<void> {
    const slot = version.slots[0];
    const dir = this.readySnapshotDir(runtime.app, version.version);
    const began = performance.now();
    try {
      if (!(await slot.captureReadySnapshot(dir))) return;
      version.readySnapshot = dir;
      void this.options.records.saveSnapshot({ appId: runtime.app.id, version: version.version, slot: READY_SNAPSHOT_SLOT, dir, createdAt: Date.now() });
      runtime.system(version, slot.instance?.id ?? '', `ready snapshot written in ${Math.round(performance.now() - began)} ms: more instances of version ${version.version} are restored from it`);
    } catch (error) {
      runtime.log.warn({ err: error, app: runtime.app.name }, 'writing the ready snapshot failed; instances will boot');
      runtime.system(version, slot.instance?.id ?? '', `writing the ready snapshot failed (more instances will boot): ${(error as Error).message}`);
      await rm(dir, { recursive: true, force: true });
    }
  }
}
