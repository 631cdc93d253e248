/**
 * @module compute/apps/gateway
 * The port the edge uses to reach apps: resolve the host's app (`<app>.<project>.<domain>` for
 * the project's default environment, `<app>.<env>.<project>.<domain>` for another)
 * among this node's apps in memory (records.ts; a request reads no database unless it names an
 * app this node does not run), acquire a ready instance of the serving version from the app's
 * runtime in one call (runtime.ts: one with room at once, its exchange counted by the slot that
 * takes it; else, once the project is within compute_gb_seconds (metering.ts), one woken or
 * started while the request waits in the app's bounded queue), and hold it until `release()`, so
 * an update drains the old version before stopping it. The request visits each file once: here,
 * the runtime, the meter when it must wait, the slot. Blocks
 * reach their project's apps the same way (platform/app-gateway.ts), and so do links between apps.
 */
import type { Socket } from 'node:net';
import { AltoError, errors } from '../../kit/errors.js';
import type { AppEndpoint, AppGateway } from '../../platform/app-gateway.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import { UNOWNED } from '../../store/apps/port.js';
import type { AppRecord, AppRecords } from './records.js';
import { describeExit, type AppRuntime, type VersionSlot } from './runtime.js';

export { MAX_QUEUED_PER_APP } from './runtime.js';

/** Where an app is on the edge: `<app>.<project>.<domain>`, or `<app>.<environment>.<project>.<domain>`. */
export interface AppAddress {
  app: string;
  project: string;
  /** The project's environment; absent: the default one. */
  environment?: string;
}

/** The edge address of an app. */
export function addressOfApp(app: Pick<AppRecord, 'name' | 'projectName' | 'environment'>): AppAddress {
  return app.environment === DEFAULT_ENVIRONMENT ? { app: app.name, project: app.projectName } : { app: app.name, project: app.projectName, environment: app.environment };
}

/** One string per address (`<app>.<project>` or `<app>.<env>.<project>`), for maps keyed by address. */
export function addressKeyOf(address: AppAddress): string {
  return hostLabelsOf({ name: address.app, projectName: address.project, environment: address.environment });
}

/** The host label of an app under the apps domain: `<app>.<project>`, or `<app>.<env>.<project>` outside the default environment. */
export function hostLabelsOf(app: Pick<AppRecord, 'name' | 'projectName'> & { environment?: string }): string {
  const environment = app.environment ?? DEFAULT_ENVIRONMENT;
  return environment === DEFAULT_ENVIRONMENT ? `${app.name}.${app.projectName}` : `${app.name}.${environment}.${app.projectName}`;
}

/** A ready instance for one exchange (HTTP request or TCP connection); `release()` once at its end. */
export interface ProxyTarget {
  host: string;
  port: number;
  /** Opens a connection to the instance the way its driver needs (`Instance.connect`). */
  connect(): Promise<Socket>;
  release(): void;
  /**
   * For a TCP connection that moves no bytes: it stops counting as activity (the instance may
   * suspend) while it stays open to the same instance. `active()` before it is used again wakes
   * that instance and counts the connection again; it rejects when the instance is gone.
   */
  quiet?(): void;
  active?(): Promise<void>;
  /** Set when the target is another node's edge (compute/cluster/routing.ts): this node's name, sent as `x-alto-via`. */
  via?: string;
}

/** What the edge's proxy asks of compute for each request or TCP connection to an app. */
export interface AppResolver {
  /**
   * A ready instance for the app (starting or resuming one if needed). Throws AltoError:
   * 404 no such app, 503 no ready instance (with Retry-After where it makes sense) or another
   * node runs the app (naming it).
   */
  acquire(address: AppAddress, kind: 'http' | 'tcp', relayed?: boolean): Promise<ProxyTarget>;
  /**
   * The common case at once, with no promise: a running instance of an app this node serves
   * with room for one more HTTP exchange, claimed; undefined for anything else (then `acquire`
   * waits, relays or says why).
   */
  tryAcquire?(address: AppAddress): ProxyTarget | undefined;
}

/** How long a request waits for an instance of a crashing or starting app before a 503. */
const ACQUIRE_WAIT_MS = 10_000;

export interface AppsGatewayOptions {
  /** This node's id: apps recorded under another node are served there. */
  node: string;
  /** Base domain of app URLs: `<app>.<project>.<domain>`. */
  appsDomain: string;
  records: AppRecords;
  /** The live apps of this node, by app id. */
  runtimes: ReadonlyMap<string, AppRuntime>;
  /** The edge's port once it listens (for app URLs). */
  edgePort(): number | undefined;
  /** Alto is stopping: no new exchanges. */
  closing(): boolean;
}

/** The edge's way in to this node's apps (and blocks', through the platform's AppGateway). */
export class AppsGateway implements AppResolver, AppGateway {
  constructor(private readonly options: AppsGatewayOptions) {}

  /**
   * An instance with room at once is handed out in the turn the request came (one settled
   * promise, as the resolver's contract wants one); only a request that must wait awaits.
   */
  acquire(address: AppAddress, kind: 'http' | 'tcp'): Promise<ProxyTarget> {
    const record = this.options.records.hereByAddress(address.project, address.app, address.environment);
    if (!record) return this.notRunHere(address).then((error) => Promise.reject(error));
    const runtime = this.options.runtimes.get(record.id);
    if (!runtime || this.options.closing()) return Promise.reject(errors.unavailable(`app "${address.app}" is not running`).withHeaders({ 'retry-after': '5' }));
    const { settings } = runtime.app;
    if (kind === 'http' && settings.tcp)
      return Promise.reject(errors.notFound(`app "${address.app}" speaks TCP, not HTTP${runtime.tcp.port ? `: connect to port ${runtime.tcp.port}` : ''}`));
    if (kind === 'tcp' && !settings.tcp) return Promise.reject(errors.notFound(`app "${address.app}" has no TCP port; it serves HTTP`));
    const claimed = runtime.acquire(ACQUIRE_WAIT_MS);
    if (!(claimed instanceof Promise)) return Promise.resolve(this.targetOf(runtime, claimed));
    return claimed.then((slot) => this.targetOf(runtime, slot));
  }

  tryAcquire(address: AppAddress): ProxyTarget | undefined {
    const record = this.options.records.hereByAddress(address.project, address.app, address.environment);
    if (!record || this.options.closing()) return undefined;
    const runtime = this.options.runtimes.get(record.id);
    if (!runtime || runtime.app.settings.tcp) return undefined;
    const slot = runtime.claimSlot();
    return slot ? this.targetOf(runtime, slot) : undefined;
  }

  /** The exchange's hold on a claimed instance; a 503 saying why when none came in time. */
  private targetOf(runtime: AppRuntime, slot: VersionSlot | undefined): ProxyTarget {
    const instance = slot?.instance;
    if (!slot || !instance) {
      slot?.release();
      const running = runtime.serving?.runningSlots().length ?? 0;
      const busy = running ? ` (its ${running} running instances are at their concurrency, ${runtime.app.settings.concurrency})` : '';
      const why = runtime.lastExit ? `; its last instance ${describeExit(runtime.lastExit)}` : '';
      throw errors.unavailable(`app "${runtime.app.name}" has no instance ready${busy}${why}`).withHeaders({ 'retry-after': '2' });
    }
    let released = false;
    let parked = false;
    return {
      host: instance.host,
      port: instance.port,
      connect: () => instance.connect(),
      release: () => {
        if (released) return;
        released = true;
        if (parked) return slot.unparkClosed();
        slot.release();
        runtime.capacityFreed();
      },
      quiet: () => {
        if (released || parked) return;
        parked = true;
        slot.park();
        runtime.capacityFreed();
      },
      active: async () => {
        if (released || !parked) return;
        await slot.wake();
        // The connection's sockets were the instance's: another one cannot take them over.
        if (slot.instance !== instance || slot.state !== 'running') throw new Error('the instance this connection was open to is gone');
        if (released || !parked) return;
        parked = false;
        slot.unpark();
      },
    };
  }

  /** Whether the project's environment (the default one when not named) has an app of this name that this node runs. */
  hasApp(projectId: string, name: string, environment?: string): boolean {
    return this.options.records.hereByName(projectId, name, environment) !== undefined;
  }

  /** A ready instance of the project's app for one request from inside Alto (cron callbacks). */
  async openApp(projectId: string, name: string, environment?: string): Promise<AppEndpoint> {
    const record = await this.options.records.findByName(projectId, name, environment);
    if (!record) throw errors.notFound(`no app "${name}" in this project`);
    const target = await this.acquire(addressOfApp(record), 'http');
    return { ...target, hostHeader: new URL(this.appUrl(record)).host };
  }

  /** `http://<app>.<project>.<domain>`, with the environment before the project outside the default one. */
  appUrl(app: Pick<AppRecord, 'name' | 'projectName'> & { environment?: string }): string {
    const port = this.options.edgePort();
    return `http://${hostLabelsOf(app)}.${this.options.appsDomain}${port && port !== 80 ? `:${port}` : ''}`;
  }

  /** Why this node serves no app at an address: there is none (404), or another node runs it (503). */
  private async notRunHere(address: AppAddress): Promise<AltoError> {
    const app = await this.options.records.findByAddress(address.project, address.app, address.environment);
    if (app) return this.runElsewhere(app);
    const environment = address.environment ? ` environment "${address.environment}" of` : '';
    return errors.notFound(`no app "${address.app}" in${environment} project "${address.project}"`);
  }

  /** The answer for an app another node runs (or, just after `alto migrate`, none does yet). */
  runElsewhere(app: AppRecord): AltoError {
    if (app.node === this.options.node) return errors.unavailable(`app "${app.name}" is not running`).withHeaders({ 'retry-after': '5' });
    if (app.node === UNOWNED) return errors.unavailable(`no node runs app "${app.name}" yet: the next Alto process to start on this store runs it`);
    return errors.unavailable(`app "${app.name}" runs on node ${app.node}, not on this node (${this.options.node}); reach it, and manage it, through that node`);
  }
}
