/**
 * @module compute/apps/placement
 * Where an instance start (a boot or a restore) runs: `Placement.place(start)` answers the
 * sandbox driver that runs it. `LocalPlacement` runs starts on this node's sandbox driver, chosen
 * at the first start (probed the first time an app needs it, so `alto up` with no apps stays
 * quick), once what a killed earlier run on the same data folder left of its sandboxes is given
 * back (sandbox/reap.ts, begun as the placement is made). It counts the instances in this node's
 * sandboxes, and holds them within the node's cap (ALTO_MAX_INSTANCES): past it, a boot of an
 * instance that keeps nothing on this node (no volumes, no links) goes to another node of the
 * cloud when one has room (`RemotePlacer`, compute/cluster/remote-instances.ts), else it is
 * refused with 503. Restores stay here: a snapshot stays on the node that took it.
 */
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import {
  chooseSandboxDriver,
  reapSandboxLeftovers,
  sandboxStatus,
  type ChosenSandbox,
  type Instance,
  type RestoreOptions,
  type SandboxChoice,
  type SandboxDriver,
  type SandboxSpec,
  type SandboxStatus,
} from '../sandbox/index.js';

/** One start to place: whose instance, of which version, from which image. */
export interface StartRequest {
  projectId: string;
  /** The app's environment; absent (a start from an older node): the default one. */
  environment?: string;
  app: string;
  version: number;
  /** The image's digest (`sha256:...`) and reference: another node pulls it by them. */
  digest: string;
  image: string;
}

/** Starts on other nodes, for a node at its cap (compute/cluster/remote-instances.ts). */
export interface RemotePlacer {
  /** An instance of `start` on another node with room, ready; undefined when no node has room. */
  start(start: StartRequest, spec: SandboxSpec): Promise<Instance | undefined>;
}

/** Whether an instance of this spec may run on another node: nothing of it is on this node's host (volumes, links). */
export function runsAnywhere(spec: SandboxSpec): boolean {
  return !spec.volumes?.length && !spec.links?.length;
}

export interface Placement {
  /** The driver that runs this start. Throws AltoError 503 when none can. */
  place(start: StartRequest): Promise<SandboxDriver>;
  /** Whether the drivers placed on can snapshot an instance (false until known). */
  readonly canSnapshot: boolean;
  /** For `/v1/status`: the driver chosen and why, or that it is chosen when the first app starts. */
  status(): { choice: SandboxChoice; probed: boolean } & Partial<SandboxStatus>;
  close(): Promise<void>;
}

export interface LocalPlacementOptions {
  /** `alto up --sandbox` (ALTO_SANDBOX). */
  sandbox: SandboxChoice;
  dataDir: string;
  /** Kernel, tools and disk images shared across runs (default: the sandbox module's). */
  sandboxCacheDir?: string;
  /** Instances this node's sandboxes hold at once (ALTO_MAX_INSTANCES); 0 or none: no cap. */
  maxInstances?: number;
  log: Logger;
  /** How the driver is chosen (default: `chooseSandboxDriver` for `sandbox`); tests give their own. */
  choose?: () => Promise<ChosenSandbox>;
}

/** Every start on this node's sandbox driver. */
export class LocalPlacement implements Placement {
  private chosen: Promise<ChosenSandbox> | undefined;
  private chosenStatus: SandboxStatus | undefined;
  /** What a killed earlier run on this data folder left of its sandboxes, given back as this one starts. */
  private readonly reaped: Promise<void>;
  /** Instances in this node's sandboxes, until each exits. */
  private readonly running = new Set<Instance>();
  /** Starts under way in this node's sandboxes. */
  private starting = 0;
  private remote: RemotePlacer | undefined;

  constructor(private readonly options: LocalPlacementOptions) {
    this.reaped = this.reapLeftovers();
  }

  private async reapLeftovers(): Promise<void> {
    const { log } = this.options;
    try {
      const report = await reapSandboxLeftovers(this.stateDir);
      if (report.reaped.length) log.info({ instances: report.reaped, removed: report.removed }, `sandbox: gave back what ${report.reaped.length} instance(s) of an earlier run left`);
      if (report.failures.length) log.error({ failures: report.failures }, 'sandbox: could not give back all an earlier run left (tried again at the next start)');
    } catch (error) {
      log.error({ err: error }, 'sandbox: could not look for what an earlier run left');
    }
  }

  private get stateDir(): string {
    return join(this.options.dataDir, 'apps', 'sandbox');
  }

  /** Boots past this node's cap go to other nodes through `remote` (or none, once the node leaves the cloud). */
  placeOnOtherNodes(remote: RemotePlacer | undefined): void {
    this.remote = remote;
  }

  /** The node's cap (0: none). */
  get maxInstances(): number {
    return this.options.maxInstances ?? 0;
  }

  /** Instances in this node's sandboxes now (and starting), those hosted for other nodes included. */
  get sandboxes(): number {
    return this.running.size + this.starting;
  }

  private hasRoom(): boolean {
    return this.maxInstances <= 0 || this.sandboxes < this.maxInstances;
  }

  /** The start's driver: this node's, whose boots go to another node when this one is full. */
  place(start: StartRequest): Promise<SandboxDriver> {
    return this.driver().then((local) => this.placing(start, local));
  }

  private placing(start: StartRequest, local: SandboxDriver): SandboxDriver {
    return {
      name: local.name,
      probe: () => local.probe(),
      describe: () => local.describe(),
      start: (spec: SandboxSpec) => this.boot(start, spec, local),
      restore: (snapshotDir: string, options?: RestoreOptions) => this.counted(() => local.restore(snapshotDir, options)),
      // The driver is this placement's: it closes with it.
      close: async () => undefined,
    };
  }

  private async boot(start: StartRequest, spec: SandboxSpec, local: SandboxDriver): Promise<Instance> {
    if (this.hasRoom()) return this.counted(() => local.start(spec));
    const remote = this.remote;
    if (remote && runsAnywhere(spec)) {
      const instance = await remote.start(start, spec);
      if (instance) return instance;
    }
    // It may have freed up while other nodes were asked.
    if (this.hasRoom()) return this.counted(() => local.start(spec));
    // Another node may have had room and still not taken it (unreachable, its certificate refused):
    // each refusal is in the log with its cause, so the answer does not say which.
    const elsewhere = !remote ? '' : runsAnywhere(spec) ? ' and no other node took it (each node asked that did not is in the log, with why)' : ' (an app with volumes or links runs on its own node)';
    throw errors.unavailable(`this node runs as many instances as it may (${this.maxInstances}, ALTO_MAX_INSTANCES)${elsewhere}`).withHeaders({ 'retry-after': '5' });
  }

  /** Starts an instance for another node's app in this node's sandbox, within the cap (compute/cluster/hosted-instances.ts). */
  async host(spec: SandboxSpec): Promise<Instance> {
    const local = await this.driver();
    if (!this.hasRoom()) throw errors.unavailable(`this node runs as many instances as it may (${this.maxInstances})`).withHeaders({ 'retry-after': '5' });
    return this.counted(() => local.start(spec));
  }

  /** A start in this node's sandbox, counted from its beginning until the instance exits. */
  private async counted(run: () => Promise<Instance>): Promise<Instance> {
    this.starting += 1;
    try {
      const instance = await run();
      this.running.add(instance);
      void instance.exited.then(() => this.running.delete(instance));
      return instance;
    } finally {
      this.starting -= 1;
    }
  }

  /** The driver, probed the first time an app needs one. */
  private driver(): Promise<SandboxDriver> {
    this.chosen ??= this.reaped
      .then(() => this.options.choose?.() ?? chooseSandboxDriver({ choice: this.options.sandbox, stateDir: this.stateDir, cacheDir: this.options.sandboxCacheDir }))
      .then(
        (chosen) => {
          this.chosenStatus = sandboxStatus(chosen);
          this.options.log.info({ sandbox: this.chosenStatus }, `sandbox: ${chosen.description.driver} (${chosen.description.reason})`);
          return chosen;
        },
        (error: Error) => {
          this.chosen = undefined;
          this.options.log.error({ err: error }, 'no sandbox driver can run apps on this host');
          throw errors.unavailable(`apps cannot run on this host: ${error.message}`);
        },
      );
    return this.chosen.then((chosen) => chosen.driver);
  }

  get canSnapshot(): boolean {
    return this.chosenStatus?.snapshot === true;
  }

  status(): { choice: SandboxChoice; probed: boolean } & Partial<SandboxStatus> {
    if (this.chosenStatus) return { choice: this.options.sandbox, probed: true, ...this.chosenStatus };
    return { choice: this.options.sandbox, probed: false, reason: 'chosen when the first app starts (no app has run yet)' };
  }

  async close(): Promise<void> {
    if (this.chosen) await (await this.chosen.catch(() => undefined))?.driver.close();
  }
}
