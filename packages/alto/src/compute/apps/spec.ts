/**
 * @module compute/apps/spec
 * What an app's instances run with: its settings as a request gives them, filled with defaults
 * and checked against each other, the image and the driver (`settingsOf`, `assertLinks`,
 * `AppSpecs.assertDriverSupports`), and the sandbox spec built from them (`AppSpecs.specOf`: the
 * image's env under the app's, a PATH, volumes under the data folder, the platform's port, and
 * links to the project's other apps, each connection acquired through the edge's port).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../../kit/errors.js';
import type { ImageSpec } from '../images/spec.js';
import type { SandboxLink, SandboxSpec } from '../sandbox/index.js';
import { addressOfApp, type AppsGateway } from './gateway.js';
import type { Placement, StartRequest } from './placement.js';
import type { AppRecord, AppRecords, AppSettings, AppVolume } from './records.js';
import { holdsHidden } from './secrets.js';

/** Settings as a request gives them; what is missing takes its default (Run) or stays (Update). */
export type AppSettingsInput = Partial<AppSettings>;

export const APP_DEFAULTS = {
  port: 8080,
  memory: 256,
  cpus: 1,
  min_instances: 1,
  max_instances: 1,
  concurrency: 50,
  idle_timeout: 5,
  pool: 0,
} as const;

/** The port a link shows a microVM guest when the linked app does not exist yet (any port reaches it). */
const LINK_DEFAULT_PORT = 80;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `{ [name]: value }` when a value is given, else nothing (settings absent in older records stay absent). */
function optional<K extends string, V>(name: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [name]: value } as Record<K, V>);
}

/** Fills defaults and checks the settings against each other and the image. */
export function settingsOf(input: AppSettingsInput, base: AppSettings | undefined, image: ImageSpec): AppSettings {
  const exposed = image.exposedPorts.find((port) => port.protocol === 'tcp')?.port;
  const tcp = input.tcp ?? base?.tcp ?? 0;
  let port = input.port ?? base?.port ?? (tcp || exposed || APP_DEFAULTS.port);
  if (input.tcp !== undefined && input.port === undefined && input.tcp) port = input.tcp;
  if (tcp && port !== tcp)
    throw errors.badRequest(`port ${port} and tcp ${tcp} differ: an app serves either HTTP on port or TCP on tcp; give one of them (or the same number)`);
  const minInstances = input.min_instances ?? base?.min_instances ?? APP_DEFAULTS.min_instances;
  const pool = input.pool ?? base?.pool ?? APP_DEFAULTS.pool;
  const maxInstances = input.max_instances ?? base?.max_instances ?? Math.max(APP_DEFAULTS.max_instances, minInstances) + pool;
  if (maxInstances < Math.max(1, minInstances))
    throw errors.badRequest(`max_instances ${maxInstances} is below min_instances ${minInstances} (or below 1)`);
  if (maxInstances < Math.max(1, minInstances) + pool)
    throw errors.badRequest(`pool ${pool} does not fit: max_instances ${maxInstances} must hold min_instances (at least 1) plus the pool's spares, ${Math.max(1, minInstances) + pool}`);
  const volumes = input.volumes ?? base?.volumes ?? [];
  const settings: AppSettings = {
    port,
    env_vars: input.env_vars ? { ...(base?.env_vars ?? {}), ...input.env_vars } : { ...(base?.env_vars ?? {}) },
    memory: input.memory ?? base?.memory ?? APP_DEFAULTS.memory,
    cpus: input.cpus ?? base?.cpus ?? APP_DEFAULTS.cpus,
    min_instances: minInstances,
    max_instances: maxInstances,
    concurrency: input.concurrency ?? base?.concurrency ?? APP_DEFAULTS.concurrency,
    idle_timeout: input.idle_timeout ?? base?.idle_timeout ?? APP_DEFAULTS.idle_timeout,
    pool,
    volumes,
    tcp,
    tcp_port: input.tcp_port ?? base?.tcp_port ?? 0,
    outbound: input.outbound ?? base?.outbound ?? false,
    links: input.links ?? base?.links ?? [],
    ...hiddenEnvOf(input, base),
    ...((input.follow_tag ?? base?.follow_tag) ? { follow_tag: true } : {}),
    ...optional('stop_signal', input.stop_signal ?? base?.stop_signal),
    ...optional('stop_timeout', input.stop_timeout ?? base?.stop_timeout),
    ...optional('entrypoint', input.entrypoint ?? base?.entrypoint),
    ...optional('command', input.command ?? base?.command),
    ...optional('stack', input.stack ?? base?.stack),
    ...optional('health_check', input.health_check ?? base?.health_check),
    ...optional('link_aliases', input.link_aliases ?? base?.link_aliases),
  };
  for (const [alias, target] of Object.entries(settings.link_aliases ?? {}))
    if (!settings.links.includes(target)) throw errors.badRequest(`link_aliases.${alias}: "${target}" is not one of the app's links (${settings.links.join(', ') || 'it has none'})`);
  // A hidden value is not kept among env_vars too (older functions had their key and secrets there).
  for (const [name, value] of Object.entries(settings.hidden_env?.env ?? {})) if (settings.env_vars[name] === value) delete settings.env_vars[name];
  if (volumes.length > 0 && settings.min_instances > 1)
    throw errors.badRequest('an app with volumes runs one instance (a volume has one user at a time); set min_instances to 1');
  if (volumes.length > 0 && pool > 0) throw errors.badRequest('an app with volumes runs one instance (a volume has one user at a time); set pool to 0');
  return settings;
}

/** The hidden env settings keep: the one given, else the one they had; none when emptied. */
function hiddenEnvOf(input: AppSettingsInput, base: AppSettings | undefined): Pick<AppSettings, 'hidden_env'> {
  const hidden = input.hidden_env ?? base?.hidden_env;
  return holdsHidden(hidden) ? { hidden_env: hidden } : {};
}

/** Links name other apps of the project (names, count and repeats are the schema's, see schema.ts), never the app itself. */
export function assertLinks(name: string, links: string[] | undefined): void {
  if (links?.includes(name)) throw errors.badRequest(`links: an app cannot link to itself ("${name}"); name other apps of the project`);
}

/** The start of an instance of this version of the app, as placement sees it. */
export function startOf(app: Pick<AppRecord, 'projectId' | 'name' | 'version'> & Partial<Pick<AppRecord, 'digest' | 'image' | 'environment'>>): StartRequest {
  return {
    projectId: app.projectId,
    ...(app.environment ? { environment: app.environment } : {}),
    app: app.name,
    version: app.version,
    digest: app.digest ?? '',
    image: app.image ?? '',
  };
}

export interface AppSpecsOptions {
  dataDir: string;
  records: AppRecords;
  /** Where starts run: asked what its driver can do. */
  placement: Placement;
  /** Links acquire the linked app's instance the way the edge does, and hear why another node's is not here. */
  gateway: Pick<AppsGateway, 'acquire' | 'runElsewhere'>;
  /** The edge's port once it listens: instances may call Alto's API through it. */
  platformPort(): number | undefined;
}

/** Sandbox specs of apps' instances, and the checks that need the driver. */
export class AppSpecs {
  constructor(private readonly options: AppSpecsOptions) {}

  /** The folder of all the app's volumes. */
  volumesOf(app: Pick<AppRecord, 'projectId' | 'name'>): string {
    return join(this.options.dataDir, 'apps', 'volumes', app.projectId, app.name);
  }

  private volumeDir(app: Pick<AppRecord, 'projectId' | 'name'>, volume: AppVolume): string {
    return join(this.volumesOf(app), volume.name);
  }

  /**
   * Refuses, before anything is pulled or started, a setting the chosen driver cannot honour
   * (today: outbound access on a driver without it), so the caller hears why at once.
   */
  async assertDriverSupports(start: StartRequest, settings: Pick<AppSettings, 'outbound'>): Promise<void> {
    if (!settings.outbound) return;
    const driver = await this.options.placement.place(start);
    const { capabilities, driver: name } = await driver.describe();
    if (!capabilities.outbound)
      throw errors.badRequest(
        `outbound: true is not available here: the ${name} sandbox cannot give apps internet access${name === 'microvm' ? ' without opening the host\'s loopback to them' : ' (nftables is missing)'}; set outbound to false${name === 'microvm' ? ' or run Alto with --sandbox process' : ''}`,
      );
  }

  specOf(app: AppRecord, image: ImageSpec, rootfs: string): SandboxSpec {
    const { settings } = app;
    const env: Record<string, string> = { ...image.env, ...settings.hidden_env?.env, ...settings.env_vars, PORT: String(settings.port) };
    if (!env.PATH) env.PATH = DEFAULT_PATH;
    const volumes = settings.volumes.map((volume) => {
      const dir = this.volumeDir(app, volume);
      mkdirSync(dir, { recursive: true });
      return { dir, path: volume.path };
    });
    const platformPort = this.options.platformPort();
    const spec: SandboxSpec & { volumes?: { dir: string; path: string; sizeMiB?: number }[] } = {
      rootfs,
      // Docker's rule: a new entrypoint drops the image's CMD unless a command is given too.
      entrypoint: settings.entrypoint ?? image.entrypoint,
      cmd: settings.command ?? (settings.entrypoint ? [] : image.cmd),
      ...(settings.entrypoint || settings.command ? { expandArgs: true } : {}),
      env,
      workdir: image.workingDir,
      user: image.user,
      port: settings.port,
      memoryMiB: settings.memory,
      cpus: settings.cpus,
      allowOutbound: settings.outbound,
      // Every instance may call Alto's API through the edge (ALTO_URL), and nothing else on the host.
      ...(platformPort !== undefined ? { platform: { port: platformPort } } : {}),
      name: app.name,
      // The app's own stop signal, else its image's (Docker's order); the driver's default is SIGTERM.
      ...((settings.stop_signal ?? image.stopSignal) ? { stopSignal: settings.stop_signal ?? image.stopSignal } : {}),
      // The process driver gives each project a host id range of its own (compute/sandbox/id-ranges.ts).
      tenant: app.projectId,
      ...(volumes.length > 0 ? { volumes } : {}),
      ...(settings.links.length > 0 ? { links: settings.links.map((name) => this.linkOf(app, name)) } : {}),
      ...(settings.hidden_env?.files?.length
        ? { secretFiles: settings.hidden_env.files.map(({ target, mode, uid, gid, value }) => ({ target, mode, value, ...(uid !== undefined ? { uid } : {}), ...(gid !== undefined ? { gid } : {}) })) }
        : {}),
      ...(settings.health_check
        ? { health: { test: settings.health_check.test, intervalSeconds: settings.health_check.interval, timeoutSeconds: settings.health_check.timeout, startPeriodSeconds: settings.health_check.start_period, retries: settings.health_check.retries } }
        : {}),
    };
    return spec;
  }

  /**
   * One link of an app's instances: each connection finds the linked app by name in the app's
   * own project and environment (never another's), wakes it and holds it until the connection ends, like a
   * connection to its edge port. It may be deployed after the linking app; until it exists its
   * connections are closed. Its port for the guest is the linked app's own when it exists now.
   * Linked apps run on this node (apps stay on the node that deployed them).
   */
  private linkOf(app: AppRecord, name: string): SandboxLink {
    const { records, gateway } = this.options;
    const linked = records.hereByName(app.projectId, name, app.environment);
    const aliases = Object.entries(app.settings.link_aliases ?? {})
      .filter(([, target]) => target === name)
      .map(([alias]) => alias);
    return {
      name,
      ...(aliases.length > 0 ? { aliases } : {}),
      port: linked ? linked.settings.tcp || linked.settings.port : LINK_DEFAULT_PORT,
      connect: async () => {
        const target = records.hereByName(app.projectId, name, app.environment);
        if (!target) {
          const elsewhere = await records.findByName(app.projectId, name, app.environment);
          throw elsewhere ? gateway.runElsewhere(elsewhere) : errors.notFound(`no app "${name}" in project "${app.projectName}" (linked from "${app.name}")`);
        }
        return gateway.acquire(addressOfApp(target), target.settings.tcp ? 'tcp' : 'http');
      },
    };
  }
}
