/**
 * @module compute/apps/service
 * The `app` service: run an OCI image as an app of the caller's project and manage it (Run,
 * Update with zero downtime, Delete, Get/Status, List, Logs and FollowLogs, Resolve, Regions,
 * Reserve), wire-compatible with M3O's app API where the fields match. An app is reached at
 * `http://<app>.<project>.<domain>:<edge port>` (domain from `--apps-domain`, default
 * `localhost`, which browsers and curl resolve to loopback), or on its own edge port for TCP
 * apps. Other parts reach the same apps with `platform.use(appsComponent)`.
 *
 * Apps with volumes are updated old-first (a volume has one user at a time), so they are
 * briefly unavailable during an update; apps without volumes switch with no gap.
 */
import { randomBytes } from 'node:crypto';
import { errors, isAltoError } from '../../kit/errors.js';
import { loadNodeId } from '../../kit/node-id.js';
import type { Platform } from '../../platform/platform.js';
import { component, defineService, endpoint, streamEndpoint, type CallContext, type Tenant } from '../../platform/service.js';
import { imagesComponent } from '../images/service.js';
import { buildsComponent, type DockerfileSourceRequest } from '../build/builds.js';
import { AppManager, type AppOwner } from './manager.js';
import { MAX_LOG_ANSWER_BYTES } from './runtime.js';
import type { AppSettingsInput } from './spec.js';
import type { AppSourceRequest } from './source-builder.js';
import { hiddenEnvForUpdate, readSecretFiles, readSecrets, type HiddenEnv, type SecretFileRequest } from './secrets.js';
import { domainsByApp, setAppDomains } from './domains.js';
import {
  BuildLogLineView,
  BuildLogsRequest,
  DeleteRequest,
  DeleteResponse,
  ListRequest,
  ListResponse,
  LogLineView,
  logLineView,
  logQueryOf,
  LogsRequest,
  LogsResponse,
  logsText,
  NameRequest,
  RegionsRequest,
  RegionsResponse,
  reservationView,
  ReserveRequest,
  ReserveResponse,
  ResolveRequest,
  ResolveResponse,
  RunRequest,
  ServiceResponse,
  serviceView,
  UpdateRequest,
} from './schema.js';
import type { z } from 'zod';
import { appSection } from '../transfer/app-section.js';

export const appsComponent = component('apps.manager', async (platform: Platform) => {
  const limits = platform.limits;
  const metering = platform.config.metering !== false;
  const apps = await AppManager.open({
    dataDir: platform.config.dataDir,
    store: platform.stores.apps,
    node: loadNodeId(platform.config.dataDir),
    cipher: platform.masterKey().cipher,
    log: platform.log.child({ component: 'apps' }),
    images: platform.use(imagesComponent),
    sandbox: platform.config.sandbox ?? 'auto',
    appsDomain: platform.config.appsDomain ?? 'localhost',
    projectLimits: metering ? (projectId) => limits.projectLimits(projectId) : undefined,
    recordCompute: metering ? (usage) => void platform.meter.recordCompute(usage) : undefined,
    computeUsedThisMonth: metering ? (projectId) => computeUsedThisMonth(platform, projectId) : undefined,
    // Usage flushed more often than once a minute (ALTO_USAGE_FLUSH_MS) shows running apps' time as often.
    usageSliceMs: platform.config.usageFlushMs !== undefined ? Math.min(60_000, platform.config.usageFlushMs) : undefined,
    // How long an idle instance stays suspended before it is snapshotted (ms).
    snapshotAfterMs: wholeNumber('ALTO_SNAPSHOT_AFTER_MS', 0),
    // Below this much available memory (MiB), suspended instances are snapshotted at once (0: never).
    memoryReserveBytes: mib(wholeNumber('ALTO_MEMORY_RESERVE_MB', 0)),
    // Instance starts (boots, restores) at once on this machine; one app gets half.
    maxConcurrentStarts: wholeNumber('ALTO_MAX_STARTS', 1),
    // Instances this node's sandboxes hold at once; past it, boots go to other nodes of the cloud.
    maxInstances: wholeNumber('ALTO_MAX_INSTANCES', 0),
    // Each app's log on disk: its size cap and how many days lines are kept; the rate its output is kept at.
    logs: {
      maxBytesPerApp: wholeNumber('ALTO_LOG_MAX_BYTES_PER_APP', 256 * 1024),
      retentionMs: days(wholeNumber('ALTO_LOG_RETENTION_DAYS', 1)),
      linesPerSecond: wholeNumber('ALTO_LOG_LINES_PER_SECOND', 1),
    },
    // Each project's apps' logs together: log_days and log_bytes (projects/Create and Update).
    logBounds: platform.appLogs,
  });
  platform.appGateway = apps.gateway;
  return apps;
});

/** MiB·ms of running time the project's usage records hold for this calendar month (pending records written first). */
async function computeUsedThisMonth(platform: Platform, projectId: string): Promise<number> {
  const month = new Date().toISOString().slice(0, 7);
  await platform.meter.flush();
  const rows = await platform.stores.usage.readComputeUsage({ projectId, fromDay: `${month}-01`, toDay: `${month}-31` });
  return rows.reduce((sum, row) => sum + row.mibMs, 0);
}

/** A whole number from the environment variable `name`, at least `min`; undefined when unset. */
function wholeNumber(name: string, min: number): number | undefined {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be a whole number of at least ${min}, not "${text}"`);
  return value;
}

const days = (value: number | undefined) => (value === undefined ? undefined : value * 86_400_000);
const mib = (value: number | undefined) => (value === undefined ? undefined : value * 1024 ** 2);

function manager(context: CallContext): AppManager {
  return context.platform.use(appsComponent);
}

function owner(context: CallContext): AppOwner {
  return ownerOf(context.tenant);
}

/** An app's view with its custom domains (compute/apps/domains.ts). */
async function withDomains<View extends { name: string }>(context: CallContext, view: View): Promise<View & { custom_domains: string[] }> {
  return { ...view, custom_domains: (await domainsByApp(context.platform, context.tenant.projectId)).get(view.name) ?? [] };
}

function ownerOf(tenant: Tenant): AppOwner {
  return { projectId: tenant.projectId, projectName: tenant.projectName, environment: tenant.environment, admin: tenant.role === 'admin' };
}

/** The hidden env an app's Run gives it: the secrets named, as env vars and as files, read with the caller's key. */
async function hiddenEnvForRun(names: string[] | undefined, files: SecretFileRequest[] | undefined, context: CallContext): Promise<HiddenEnv | undefined> {
  if (!names?.length && !files?.length) return undefined;
  const tenant = context.tenant;
  const secrets = names ?? [];
  const read = files?.length ? await readSecretFiles(context.platform, tenant, tenant.environment, files) : [];
  return { env: await readSecrets(context.platform, tenant, tenant.environment, secrets), secrets, environment: tenant.environment, scopes: [], ...(read.length > 0 ? { files: read } : {}) };
}

/** The app's hidden env, for redacting what is shown of it (wherever the app runs). */
async function hiddenEnvOfApp(context: CallContext, name: string): Promise<HiddenEnv | undefined> {
  return (await manager(context).describe(owner(context), name)).record.settings.hidden_env;
}

type SettingsRequest = z.output<typeof UpdateRequest>;

function settingsOf(request: SettingsRequest): AppSettingsInput {
  const settings: AppSettingsInput = {};
  for (const key of ['port', 'env_vars', 'memory', 'cpus', 'min_instances', 'max_instances', 'concurrency', 'idle_timeout', 'pool', 'volumes', 'tcp', 'tcp_port', 'outbound', 'stop_signal', 'stop_timeout', 'links', 'follow_tag', 'entrypoint', 'command', 'stack', 'health_check', 'link_aliases'] as const) {
    if (request[key] !== undefined) (settings as Record<string, unknown>)[key] = request[key];
  }
  return settings;
}

async function assertNoApp(name: string, context: CallContext): Promise<void> {
  try {
    await manager(context).describe(owner(context), name);
  } catch (error) {
    if (isAltoError(error) && error.status === 404) return;
    throw error;
  }
  throw errors.conflict(`app "${name}" already exists in project "${context.tenant.projectName}"; use app/Update to change it`);
}

/**
 * Source deploys: with repo or files and no image, a source with a Dockerfile is built from it
 * (compute/build), any other Node.js project by the builder registered (source-builder.ts).
 */
async function imageFromSource(request: AppSourceRequest & DockerfileSourceRequest, context: CallContext): Promise<string | undefined> {
  if (request.repo === undefined && request.files === undefined) {
    if (request.dockerfile !== undefined || request.build_args !== undefined || request.build_network !== undefined || request.build_id !== undefined)
      throw errors.badRequest('dockerfile, build_args, build_network and build_id go with a source to build: give files or repo');
    return undefined;
  }
  const builds = context.platform.use(buildsComponent);
  const built = await builds.buildForApp(owner(context), request);
  return built ?? builds.record(owner(context), request.name, request.build_id, (onLog) => manager(context).sources.build(owner(context), request, onLog));
}

export const appService = defineService({
  name: 'app',
  description:
    'Run any OCI image as an app of your project, reached at http://<app>.<project>.<domain> through the edge (or a TCP port): deploy, update with zero downtime, logs, status. M3O-compatible where fields match.',
  priceMicros: 0,
  components: [imagesComponent, buildsComponent, appsComponent],
  endpoints: {
    Run: endpoint({
      description:
        'Run an image as a new app (409 when the name exists: use Update). Answers once the first instances are ready, or with the failure when they never are (then nothing is kept).',
      request: RunRequest,
      response: ServiceResponse,
      example: { name: 'web', image: 'ghcr.io/org/web:v1', port: 8080, env_vars: { GREETING: 'hello' } },
      async handler(request, context) {
        if (request.region && request.region !== 'local') throw errors.badRequest(`region "${request.region}" does not exist; app/Regions lists them (this machine is "local")`);
        // Secrets first: a key that may not read them hears so before anything is built or pulled.
        const hidden = await hiddenEnvForRun(request.secrets, request.secret_files, context);
        // An app that exists already is answered 409 before its source is built.
        if (request.image === undefined) await assertNoApp(request.name, context);
        const image = request.image ?? (await imageFromSource(request, context));
        if (!image) throw errors.badRequest('image: name the OCI image to run, such as ghcr.io/org/web:v1 (or give repo, or files, to build a Node.js project from source)');
        const state = await manager(context).run(owner(context), {
          name: request.name,
          image,
          insecure: request.insecure,
          ...settingsOf(request),
          ...(hidden ? { hidden_env: hidden } : {}),
        });
        return { service: serviceView(state) };
      },
    }),
    Update: endpoint({
      description:
        'Change an app\'s image and/or settings (env_vars are merged). The new version starts, and only once it is ready does traffic move to it and the old one stop; if it never becomes ready the old one keeps serving and Update answers the failure with its last log lines. Apps with volumes stop the old version first.',
      request: UpdateRequest,
      response: ServiceResponse,
      example: { name: 'web', image: 'ghcr.io/org/web:v2' },
      async handler(request, context) {
        const { name: _name, custom_domains: customDomains, replace_env_vars: replaceEnvVars, reset, ...changes } = request;
        // Domains first: one another app has refuses the whole call before anything is deployed.
        const domains = customDomains === undefined ? undefined : await setAppDomains(context.platform, context.tenant, request.name, customDomains);
        if (domains !== undefined && !reset?.length && Object.values(changes).every((value) => value === undefined)) {
          return { service: { ...serviceView(await manager(context).describe(owner(context), request.name)), custom_domains: domains } };
        }
        const current = await hiddenEnvOfApp(context, request.name);
        const hidden = await hiddenEnvForUpdate(context.platform, context.tenant, request.name, current, request.secrets, request.secret_files);
        const state = await manager(context).update(owner(context), {
          ...(hidden ? { hidden_env: hidden } : {}),
          name: request.name,
          image: request.image ?? (await imageFromSource(request, context)),
          insecure: request.insecure,
          ...(replaceEnvVars ? { replaceEnvVars: true } : {}),
          ...(reset?.length ? { reset } : {}),
          ...settingsOf(request),
        });
        return { service: await withDomains(context, serviceView(state)) };
      },
    }),
    Delete: endpoint({
      description: 'Stop an app and delete it with its volumes (keep_volumes keeps their folders).',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { name: 'web' },
      async handler(request, context) {
        await manager(context).delete(owner(context), request.name, { keepVolumes: request.keep_volumes });
        await context.platform.use(buildsComponent).forget(context.tenant.projectId, request.name);
        // Its custom domains go with it: another app may take them.
        await context.platform.stores.domains.replaceAppDomains(context.tenant.projectId, request.name, [], Date.now());
        return {};
      },
    }),
    Get: endpoint({
      description: 'An app: its settings, image and digest, status, URL, instances and their exits.',
      request: NameRequest,
      response: ServiceResponse,
      example: { name: 'web' },
      async handler(request, context) {
        return { service: await withDomains(context, serviceView(await manager(context).describe(owner(context), request.name))) };
      },
    }),
    Status: endpoint({
      description:
        'The status of an app (as Get): running, crashing with its last exit, instances and restarts, and each instance position\'s lifecycle state with the kernel\'s or VMM\'s own answer to whether it is frozen.',
      request: NameRequest,
      response: ServiceResponse,
      example: { name: 'web' },
      async handler(request, context) {
        const apps = manager(context);
        return { service: await withDomains(context, serviceView(await apps.withFrozen(await apps.describe(owner(context), request.name)))) };
      },
    }),
    List: endpoint({
      description: 'The apps of the project.',
      request: ListRequest,
      response: ListResponse,
      example: {},
      async handler(_request, context) {
        const domains = await domainsByApp(context.platform, context.tenant.projectId);
        return { services: (await manager(context).list(owner(context))).map((state) => ({ ...serviceView(state), custom_domains: domains.get(state.record.name) ?? [] })) };
      },
    }),
    Logs: endpoint({
      description:
        "The app's latest output (stdout and stderr of its instances) and Alto's lines about it (starts, exits, restarts), from its log on disk (kept across restarts of Alto, within the size and age caps): the newest `limit` lines, filtered by since, until, grep, instance and stream.",
      request: LogsRequest,
      response: LogsResponse,
      example: { name: 'web', lines: 100 },
      async handler(request, context) {
        // The lines are on the disk of the node that runs the app.
        const hidden = (await manager(context).runningHere(owner(context), request.name)).settings.hidden_env;
        const lines = await manager(context).logs(owner(context), request.name, logQueryOf(request, hidden, MAX_LOG_ANSWER_BYTES));
        return { logs: logsText(lines, hidden), lines: lines.map((line) => logLineView(line, hidden)) };
      },
    }),
    FollowLogs: streamEndpoint({
      description: 'The latest lines of the app\'s output from its log on disk, then every new line as it is written (the same filters as Logs), until the client closes the stream (alto logs -f).',
      request: LogsRequest,
      response: LogLineView,
      example: { name: 'web', lines: 10 },
      async *handler(request, context) {
        const hidden = (await manager(context).runningHere(owner(context), request.name)).settings.hidden_env;
        for await (const line of manager(context).follow(owner(context), request.name, logQueryOf(request, hidden, MAX_LOG_ANSWER_BYTES), context.signal)) yield logLineView(line, hidden);
      },
    }),
    BuildLogs: streamEndpoint({
      description:
        'The log of a build from source that Run or Update was given with build_id, or of the app\'s last build (name): each step with its time or "cached", the RUN steps\' output, then a last line saying how it ended. Kept on disk (across restarts of Alto, within the app\'s log size cap and retention). Waits up to a minute for a build_id not begun yet.',
      request: BuildLogsRequest,
      response: BuildLogLineView,
      example: { build_id: 'b7k2m9x4q1' },
      async *handler(request, context) {
        const builds = context.platform.use(buildsComponent);
        const buildId = request.build_id ?? (await builds.lastBuildOf(context.tenant.projectId, request.name!));
        if (!buildId) throw errors.notFound(`app "${request.name}" has no build log: it was not built from source here (or its log passed the retention)`);
        yield* builds.follow(context.tenant.projectId, buildId, context.signal);
      },
    }),
    Resolve: endpoint({
      description: "The raw address of a ready instance of the app (reachable from this machine only) and the app's URL on the edge.",
      request: ResolveRequest,
      response: ResolveResponse,
      example: { name: 'web' },
      async handler(request, context) {
        const resolved = await manager(context).resolve(owner(context), (request.id || request.name)!);
        return { url: resolved.url, app_url: resolved.publicUrl };
      },
    }),
    Regions: endpoint({
      description: 'The regions apps can run in: this machine, "local".',
      request: RegionsRequest,
      response: RegionsResponse,
      example: {},
      handler() {
        return { regions: ['local'] };
      },
    }),
    Reserve: endpoint({
      description: 'Reserve an app name (and so its address) for this project for a year.',
      request: ReserveRequest,
      response: ReserveResponse,
      example: { name: 'web' },
      async handler(request, context) {
        const reservation = await manager(context).reserve(owner(context), request.name);
        return reservationView(reservation, randomBytes(12).toString('hex'));
      },
    }),
  },
  transfer: appSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(appsComponent).deleteProject(projectId);
  },
});
