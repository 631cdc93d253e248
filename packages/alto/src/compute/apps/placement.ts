/**
 * @module compute/apps/placement
 * Where an instance start (a boot or a restore) runs: `Placement.place(start)` answers the
 * sandbox driver that runs it. Today there is one placement, `LocalPlacement`: every start runs
 * on this node, on the driver chosen at start (probed the first time an app needs it, so
 * `alto up` with no apps stays quick), once what a killed earlier run on the same data folder
 * left of its sandboxes is given back (sandbox/reap.ts, begun as the placement is made).
 * Placement across nodes (DESIGN.md, scale-out: a few random candidates by free memory and load)
 * is another implementation of the same interface.
 */
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { chooseSandboxDriver, reapSandboxLeftovers, sandboxStatus, type ChosenSandbox, type SandboxChoice, type SandboxDriver, type SandboxStatus } from '../sandbox/index.js';

/** One start to place: whose instance, of which version. */
export interface StartRequest {
  projectId: string;
  app: string;
  version: number;
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
  log: Logger;
}

/** Every start on this node's sandbox driver. */
export class LocalPlacement implements Placement {
  private chosen: Promise<ChosenSandbox> | undefined;
  private chosenStatus: SandboxStatus | undefined;
  /** What a killed earlier run on this data folder left of its sandboxes, given back as this one starts. */
  private readonly reaped: Promise<void>;

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

  place(_start: StartRequest): Promise<SandboxDriver> {
    return this.driver();
  }

  /** The driver, probed the first time an app needs one. */
  private driver(): Promise<SandboxDriver> {
    this.chosen ??= this.reaped
      .then(() => chooseSandboxDriver({ choice: this.options.sandbox, stateDir: this.stateDir, cacheDir: this.options.sandboxCacheDir }))
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
