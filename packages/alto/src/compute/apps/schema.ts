/**
 * @module compute/apps/schema
 * The wire schema of the `app` service (zod). Field names follow M3O's app API where it has
 * them (name, port, env_vars, region, repo, branch; Service {id, name, port, env_vars, status,
 * url, backend, created, updated, region}); Alto adds the image and the compute settings
 * (memory, cpus, instances, concurrency, idle_timeout, volumes, tcp, outbound, links) and, in Status,
 * the image digest, version, instances and their exits.
 */
import { STOP_SIGNAL_NAMES, stopSignalName } from '../sandbox/supervisor.js';
import { z } from 'zod';
import { errors } from '../../kit/errors.js';
import { MAX_LINKS } from '../sandbox/links.js';
import type { AppState } from './status.js';
import type { AppLogLine } from './runtime.js';
import type { ReservationRecord } from './records.js';
import type { LogQuery } from './log-store.js';
import { redactHidden, secretFilesShown, type HiddenEnv } from './secrets.js';

export const APP_NAME = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

export const AppName = z
  .string({ error: 'expected a string: the app name' })
  .regex(APP_NAME, 'app name: 1-40 lower-case letters, digits and dashes, not starting or ending with a dash (it is part of the app\'s host name)')
  .describe('name of the app: lower-case letters, digits and dashes, at most 40; part of its address <name>.<project>.<domain>');

const VolumeName = /^[a-z0-9](?:[a-z0-9_-]{0,62})$/;

const Volume = z
  .object({
    name: z.string().regex(VolumeName, 'volume name: lower-case letters, digits, dashes and underscores, at most 63'),
    path: z
      .string()
      .regex(/^\/[^\0]*$/, 'volume path: an absolute path inside the app, such as /data')
      .refine((path) => path !== '/' && !path.split('/').includes('..'), 'volume path: not / and without ..'),
  })
  .describe('a folder kept across restarts and redeploys, mounted at path');

const EnvVars = z
  .record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'env var names: letters, digits and _, not starting with a digit'),
    z.string().refine((value) => !value.includes('\0'), 'env var values cannot hold NUL'),
  )
  .describe('environment variables, added to the image\'s own; $(NAME) in a value is replaced by NAME\'s value when an instance starts (Kubernetes\' rule), links\' <APP>_SERVICE_HOST/_PORT included; $$(NAME) keeps it literal');

const Port = z.number().int('port: a whole number').min(1, 'port: 1-65535').max(65_535, 'port: 1-65535');

const MinInstances = z.number().int('min_instances: a whole number').min(0, 'min_instances: 0 or more').max(100, 'min_instances: at most 100');

/** Secret files an app may have (each at most a secret's 64 KiB: the tmpfs holds them all). */
export const MAX_SECRET_FILES = 32;

const SecretFileShape = {
  secret: z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'secret_files.secret: the key of a secret (secret/List shows them)').describe('the key of the secret'),
  target: z
    .string()
    .regex(/^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$/, 'secret_files.target: a file name of letters, digits and ._- (the file is /run/secrets/<target>)')
    .describe('the file is /run/secrets/<target>'),
  mode: z
    .number()
    .int()
    .min(0)
    .max(0o775, 'secret_files.mode: permission bits up to 0775 (509)')
    .refine((mode) => (mode & 0o002) === 0, 'secret_files.mode: a secret file is never world-writable')
    .describe("the file's permission bits, as a number (0444 = 292, Docker's default)"),
  uid: z.number().int().min(0).max(65535).optional().describe("the file's owner (default: the app's user)"),
  gid: z.number().int().min(0).max(65535).optional().describe("the file's group (default: the app's group)"),
};

/** One of `secret_files` as Run and Update take it (also what `alto deploy --secret-file` checks before sending). */
export const SecretFileSetting = z.object({ ...SecretFileShape, mode: SecretFileShape.mode.default(0o444) });

/** Settings Run and Update take; every one optional (Run fills defaults, Update keeps what was). */
const settingsFields = {
  port: Port.optional().describe('port the app listens on for HTTP (default: the image\'s first exposed TCP port, else 8080); PORT is set to it'),
  env_vars: EnvVars.optional(),
  memory: z.number().int('memory: whole MiB').min(32, 'memory: at least 32 MiB').max(65_536, 'memory: at most 65536 MiB').optional().describe('memory limit in MiB (default 256)'),
  cpus: z.number().gt(0, 'cpus: above 0').max(64, 'cpus: at most 64').optional().describe('CPUs: virtual CPUs (microvm) or a CPU-time quota (process); default 1'),
  min_instances: MinInstances.optional().describe('instances kept running: 0 scales to zero (the instance is suspended once ready and after idle_timeout, woken by the next request), 1 or more keeps the app always on; Update keeps the current value when left out'),
  max_instances: z.number().int().min(1).max(100, 'max_instances: at most 100').optional().describe('most instances (default: min_instances, at least 1, plus pool)'),
  concurrency: z.number().int().min(1).max(10_000).optional().describe('requests one instance takes at once before another is added (default 50)'),
  idle_timeout: z.number().int().min(1, 'idle_timeout: 1-10 seconds').max(10, 'idle_timeout: 1-10 seconds').optional().describe('seconds without a request before an instance is suspended (default 5)'),
  pool: z.number().int('pool: a whole number').min(0, 'pool: 0 or more').max(100, 'pool: at most 100').optional().describe('spare instances kept started and suspended beyond min_instances, woken when the others are at their concurrency, so a burst does not wait for a boot (default 0; counted in max_instances)'),
  volumes: z
    .array(Volume)
    .max(8, 'volumes: at most 8')
    .refine((volumes) => new Set(volumes.map((volume) => volume.name)).size === volumes.length, 'volumes: names must differ')
    .refine((volumes) => new Set(volumes.map((volume) => volume.path)).size === volumes.length, 'volumes: paths must differ')
    .optional(),
  tcp: z.number().int().min(0).max(65_535, 'tcp: a port, 1-65535').optional().describe('serve TCP instead of HTTP: the app\'s port exposed as a TCP port on the edge (0: HTTP app)'),
  tcp_port: z.number().int().min(0).max(65_535).optional().describe('the edge port for a TCP app (0: any free port)'),
  outbound: z.boolean().optional().describe('may the app open connections to the internet (default false); never to the host\'s own services'),
  stop_signal: z
    .string()
    .max(16)
    .refine((signal) => stopSignalName(signal) !== undefined, `stop_signal: one of ${STOP_SIGNAL_NAMES} (or its number)`)
    .optional()
    .describe("the signal an instance's app gets when it is stopped (default: the image's STOPSIGNAL, else SIGTERM), e.g. SIGINT for PostgreSQL's fast shutdown"),
  stop_timeout: z
    .number()
    .int('stop_timeout: whole seconds')
    .min(1, 'stop_timeout: 1-600 seconds')
    .max(600, 'stop_timeout: 1-600 seconds')
    .optional()
    .describe('seconds an app has to shut down after its stop signal before it is killed (default 5)'),
  entrypoint: z
    .array(z.string().max(4096, 'entrypoint: each argument at most 4096 characters').refine((arg) => !arg.includes('\0'), 'entrypoint: no NUL'))
    .max(64, 'entrypoint: at most 64 arguments')
    .optional()
    .describe("replaces the image's ENTRYPOINT (docker run --entrypoint; the image's CMD is dropped too unless command is given); [] clears it"),
  command: z
    .array(z.string().max(4096, 'command: each argument at most 4096 characters').refine((arg) => !arg.includes('\0'), 'command: no NUL'))
    .max(256, 'command: at most 256 arguments')
    .optional()
    .describe("replaces the image's CMD (the arguments after the image name in docker run)"),
  link_aliases: z
    .record(
      z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'link_aliases: each name a host name label (lower-case letters, digits and dashes)'),
      z.string().regex(APP_NAME, 'link_aliases: each value one of the linked apps'),
    )
    .refine((aliases) => Object.keys(aliases).length <= 64, 'link_aliases: at most 64')
    .optional()
    .describe('more host names for linked apps (name -> linked app): in /etc/hosts with the app\'s own name, so name:port reaches it (a template\'s service names)'),
  health_check: z
    .object({
      test: z.array(z.string().max(4096).refine((arg) => !arg.includes('\0'), 'health_check.test: no NUL')).min(1, 'health_check.test: the command to run').max(64, 'health_check.test: at most 64 arguments').describe("the command, run in the app's sandbox as its user; exit status 0 means healthy (['/bin/sh', '-c', '...'] for a shell line)"),
      interval: z.number().min(0.1, 'health_check.interval: 0.1-300 seconds').max(300, 'health_check.interval: 0.1-300 seconds').default(5).describe('seconds between runs until it first passes (default 5)'),
      timeout: z.number().min(0.1, 'health_check.timeout: 0.1-300 seconds').max(300, 'health_check.timeout: 0.1-300 seconds').default(30).describe('seconds one run may take before it counts as failed (default 30)'),
      start_period: z.number().min(0).max(3600, 'health_check.start_period: at most 3600 seconds').default(0).describe('first seconds whose failures are not logged (default 0)'),
      retries: z.number().int().min(1, 'health_check.retries: 1-100').max(100, 'health_check.retries: 1-100').default(3).describe('once ready, failures in a row that make an instance unhealthy, shown in Status (default 3)'),
    })
    .optional()
    .describe("a command that says whether the app is up (Docker's HEALTHCHECK): an instance is ready, and takes requests, only once its port listens and the command first passes"),
  stack: z
    .object({
      name: z.string().regex(APP_NAME, 'stack.name: a stack name (lower-case letters, digits and dashes)'),
      service: z.string().regex(APP_NAME, 'stack.service: a service name (lower-case letters, digits and dashes)'),
      digest: z.string().regex(/^[0-9a-f]{1,64}$/, 'stack.digest: hexadecimal').optional().describe("a digest of the service's settings in the template (template/Update compares it)"),
    })
    .optional()
    .describe('the template stack this app is a service of (template/Deploy sets it; template/Destroy removes the stack\'s apps)'),
  links: z
    .array(z.string({ error: 'links: app names' }).regex(APP_NAME, 'links: each an app name (1-40 lower-case letters, digits and dashes, not starting or ending with a dash)'))
    .max(MAX_LINKS, `links: at most ${MAX_LINKS} apps`)
    .refine((links) => new Set(links).size === links.length, 'links: names must differ')
    .optional()
    .describe('other apps of the same project this app reaches: for each, <NAME>_SERVICE_HOST and <NAME>_SERVICE_PORT (upper-cased, - as _) lead to it; the linked app may be deployed later'),
  insecure: z.boolean().optional().describe('allow plain HTTP for the image\'s registry (loopback registries always may)'),
  follow_tag: z
    .boolean()
    .optional()
    .describe("for an image pushed to Alto's own registry (<alto host>/<project>/<name>:<tag>): update the app, without downtime, whenever a new image is pushed to that tag (default false; Update keeps the current value when left out)"),
  secrets: z
    .array(z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'secrets: each the key of a secret (secret/List shows them)'))
    .max(64, 'secrets: at most 64')
    .refine((names) => new Set(names).size === names.length, 'secrets: names must differ')
    .optional()
    .describe('secrets of the project the app gets as env vars (stripe-key -> STRIPE_KEY), read at Run and at each Update; needs a key that may read secrets ("secret" scope or "*"). Their values are never shown. Update: the new list replaces the old, [] drops them'),
  secret_files: z
    .array(SecretFileSetting)
    .max(MAX_SECRET_FILES, `secret_files: at most ${MAX_SECRET_FILES}`)
    .refine((files) => new Set(files.map((file) => file.target)).size === files.length, 'secret_files: targets must differ')
    .optional()
    .describe('secrets of the project the app sees as files, /run/secrets/<target> (compose\'s secrets), in memory (a tmpfs), never in its env; read at Run and at each Update, with a key that may read secrets. Their values are never shown. Update: the new list replaces the old, [] drops them'),
};

/** Source deploys (source-builder.ts; built by compute/functions/app-source.ts): a Node.js project built into an image. */
const sourceFields = {
  repo: z.string().optional().describe('build a Node.js project from this git repository instead of running an image (package.json with a start script "node <file>" or a main)'),
  branch: z.string().optional().describe('branch of repo (default: its default branch)'),
  path: z.string().optional().describe('folder inside repo holding the project'),
  files: z.record(z.string(), z.string()).optional().describe('a Node.js project uploaded as relative path -> base64 content (what `alto deploy <folder>` sends), built instead of an image'),
  dockerfile: z
    .string()
    .max(255)
    .regex(/^[^\0]+$/, 'dockerfile: a path inside the source')
    .optional()
    .describe('build the image from this Dockerfile of the source (path inside it; a source with a Dockerfile at its top is built so without it)'),
  build_args: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'build_args: names of letters, digits and _'), z.string().max(4096))
    .refine((args) => Object.keys(args).length <= 64, 'build_args: at most 64')
    .optional()
    .describe('values of the Dockerfile\'s ARGs (docker build --build-arg)'),
  build_network: z.boolean().optional().describe('let the Dockerfile\'s RUN steps reach the internet (default false; the outbound guard of apps applies)'),
  build_id: z
    .string()
    .regex(/^[a-z0-9]{8,32}$/, 'build_id: 8-32 lower-case letters and digits')
    .optional()
    .describe('a name for the Dockerfile build (the image\'s tag), to follow its log with app/BuildLogs while Run or Update waits'),
};

export const RunRequest = z
  .object({
    name: AppName,
    image: z.string().min(1, 'image: name the OCI image to run, such as ghcr.io/org/web:v1').optional().describe('the OCI image to run'),
    region: z.string().optional().describe('region to run in; this machine is "local"'),
    ...sourceFields,
    ...settingsFields,
    // Serverless by default, as Cloud Run (which M3O's app API wrapped): an app sleeps when idle unless it asks to stay on.
    min_instances: MinInstances.default(0).describe('instances kept running: 0 scales to zero (the instance is suspended once ready and after idle_timeout, woken by the next request), 1 or more keeps the app always on'),
  });

/** Settings app/Update can return to their default (`reset`). */
export const RESETTABLE_SETTINGS = ['entrypoint', 'command', 'health_check', 'stop_signal', 'stop_timeout', 'link_aliases'] as const;

export const UpdateRequest = z
  .object({
    name: AppName,
    image: z.string().min(1).optional().describe('a new image (pulled again when given, so a moved tag is seen)'),
    ...sourceFields,
    ...settingsFields,
    replace_env_vars: z.boolean().optional().describe("env_vars replaces the app's whole list instead of being merged into it (default false)"),
    reset: z
      .array(z.enum(RESETTABLE_SETTINGS, { error: `reset: each one of ${RESETTABLE_SETTINGS.join(', ')}` }))
      .max(RESETTABLE_SETTINGS.length)
      .optional()
      .describe("settings returned to what the app has without them (the image's entrypoint and command, no health check, the image's stop signal...); a setting given in the same call wins"),
    custom_domains: z
      .array(z.string().max(253, 'custom_domains: a domain name is at most 253 characters'))
      .max(20, 'custom_domains: at most 20 per app')
      .optional()
      .describe("the app's whole list of custom domains (served over HTTPS once they point at Alto; see domains/List for their status); left out, the list stays as it is"),
  });

export const NameRequest = z.object({ name: AppName });

export const BuildLogsRequest = z
  .object({
    build_id: z.string().regex(/^[a-z0-9]{8,32}$/, 'build_id: 8-32 lower-case letters and digits').optional().describe('the build_id given to Run or Update'),
    name: AppName.optional().describe("the app whose last build's log to answer (when build_id is left out)"),
  })
  .refine((request) => Boolean(request.build_id || request.name), 'give build_id, or the name of the app whose last build to show');

export const BuildLogLineView = z
  .object({
    at: z.string().describe('when the line was written, RFC 3339'),
    line: z.string(),
    done: z.enum(['succeeded', 'failed']).optional().describe('on the last line: how the build ended'),
    image: z.string().optional().describe('on the last line of a build that succeeded: the image built'),
  })
  .meta({ id: 'AppBuildLogLine' });

export const DeleteRequest = z
  .object({ name: AppName, keep_volumes: z.boolean().default(false).describe('keep the app\'s volume folders on disk') });

export const ListRequest = z.object({});

export const ResolveRequest = z
  .object({
    id: z.string().optional().describe('the app\'s id (or name)'),
    name: z.string().optional().describe('the app\'s name'),
  })
  .refine((request) => Boolean(request.id || request.name), 'give the app\'s id or name');

const LogStream = z.enum(['stdout', 'stderr', 'system']).describe('one stream only: stdout, stderr, or system (Alto\'s own lines: starts, exits, restarts)');

/** The longest `grep` (a plain substring, never a pattern). */
export const MAX_LOG_GREP = 256;
/** The most lines one read answers with. */
export const MAX_LOG_LIMIT = 5_000;
const LogTime = (what: string) =>
  z
    .string()
    .max(64)
    .optional()
    .describe(`${what}: an RFC 3339 time (2026-01-02T15:04:05Z) or a duration back from now (30s, 10m, 2h, 7d)`);

export const LogsRequest = z
  .object({
    name: AppName,
    logs_type: z.string().max(64).optional().describe('M3O: "build" logs do not exist for images; runtime logs are returned'),
    lines: z.number().int().min(1).max(MAX_LOG_LIMIT).default(200).describe('how many of the last lines (default 200)'),
    limit: z.number().int().min(1).max(MAX_LOG_LIMIT).optional().describe(`the most lines answered, the newest (as lines; at most ${MAX_LOG_LIMIT})`),
    stream: LogStream.optional(),
    since: LogTime('lines written at or after'),
    until: LogTime('lines written at or before'),
    grep: z.string().min(1).max(MAX_LOG_GREP).optional().describe(`only lines holding this text (a plain substring, at most ${MAX_LOG_GREP} characters)`),
    instance: z.string().max(64).optional().describe('only the lines of this instance (its id, as Status and the lines show it)'),
  });

/** What a Logs or FollowLogs request asks of the app's log: grep matches lines as shown (hidden values redacted). */
export function logQueryOf(request: z.output<typeof LogsRequest>, hidden: HiddenEnv | undefined, maxBytes: number): LogQuery {
  const now = Date.now();
  const since = parseLogTime('since', request.since, now);
  const until = parseLogTime('until', request.until, now);
  if (since !== undefined && until !== undefined && since > until) throw errors.badRequest('since: it is after until; nothing lies between them');
  return {
    limit: request.limit ?? request.lines,
    since,
    until,
    grep: request.grep,
    instance: request.instance || undefined,
    stream: request.stream,
    maxBytes,
    text: (line) => redactHidden(line, hidden),
  };
}

const DURATION = /^(\d{1,9})(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A time `since` or `until` names, in ms: an RFC 3339 time or a duration back from `now`; 400 naming the field otherwise. */
export function parseLogTime(field: 'since' | 'until', text: string | undefined, now = Date.now()): number | undefined {
  if (text === undefined || text === '') return undefined;
  const duration = DURATION.exec(text.trim());
  if (duration) return now - Number(duration[1]) * UNIT_MS[duration[2] as keyof typeof UNIT_MS];
  const at = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(at)) throw errors.badRequest(`${field}: "${text}" is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration such as 10m, 2h or 7d`);
  return at;
}

export const LogLineView = z
  .object({
    at: z.string().describe('when the line was written, RFC 3339'),
    stream: LogStream,
    line: z.string(),
    instance: z.string(),
    version: z.number().int(),
    node: z.string().optional().describe('the node that wrote the line'),
  })
  .meta({ id: 'AppLogLine' });

export const LogsResponse = z
  .object({
    logs: z.string().describe('the lines as text, Alto\'s own prefixed with "alto: "'),
    lines: z.array(LogLineView),
  });

export const InstanceView = z
  .object({
    id: z.string(),
    version: z.number().int(),
    state: z.string().describe('starting, running, suspended (frozen, memory kept), snapshotted (saved to disk, process ended), exited (stopped by Alto) or failed (ended on its own)'),
    driver: z.string(),
    started: z.string(),
    ended: z.string().optional(),
    exit_code: z.number().int().nullable().optional(),
    exit_reason: z.string().optional(),
  })
  .meta({ id: 'AppInstance' });

export const ServiceView = z
  .object({
    id: z.string(),
    name: z.string(),
    port: z.number().int(),
    env_vars: z.record(z.string(), z.string()),
    secrets: z.array(z.string()).describe('the secrets named at deploy (names only: values are never shown)'),
    hidden_env: z.array(z.string()).describe('env vars the app runs with whose values are never shown: its secrets, and a function\'s ALTO_KEY'),
    secret_files: z.array(z.object(SecretFileShape)).optional().describe('the secrets it sees as files in /run/secrets (names only: values are never shown)'),
    status: z.string().describe('deploying, running, updating, crashing (an instance exited; restarting with back-off) or failed'),
    url: z.string().describe('the app\'s address on the edge'),
    backend: z.string().describe('raw address of a ready instance, reachable from this machine only'),
    created: z.string(),
    updated: z.string(),
    region: z.string(),
    repo: z.string(),
    branch: z.string(),
    custom_domains: z.array(z.string()),
    project: z.string(),
    image: z.string(),
    digest: z.string(),
    version: z.number().int(),
    memory: z.number().int(),
    cpus: z.number(),
    min_instances: z.number().int(),
    max_instances: z.number().int(),
    concurrency: z.number().int(),
    idle_timeout: z.number().int(),
    pool: z.number().int(),
    volumes: z.array(z.object({ name: z.string(), path: z.string() })),
    tcp: z.number().int(),
    tcp_port: z.number().int().optional().describe('the edge port a TCP app is reached at'),
    outbound: z.boolean(),
    stop_signal: z.string().optional().describe('the signal its app gets when an instance is stopped, when set (else the image\'s STOPSIGNAL, else SIGTERM)'),
    stop_timeout: z.number().int().optional().describe('seconds its app has to shut down when stopped, when set (else 5)'),
    entrypoint: z.array(z.string()).optional().describe("the entrypoint it runs instead of the image's, when set"),
    command: z.array(z.string()).optional().describe("the command it runs instead of the image's CMD, when set"),
    link_aliases: z.record(z.string(), z.string()).optional().describe('more host names of its linked apps, when set'),
    stack: z.object({ name: z.string(), service: z.string(), digest: z.string().optional() }).optional().describe('the template stack it is a service of, when it is one'),
    health_check: z.object({ test: z.array(z.string()), interval: z.number(), timeout: z.number(), start_period: z.number(), retries: z.number().optional() }).optional().describe('the command that makes its instances ready, when it has one'),
    links: z.array(z.string()).describe('apps of the same project this app reaches (<NAME>_SERVICE_HOST/PORT)'),
    follow_tag: z.boolean().optional().describe("updated whenever a new image is pushed to its tag in Alto's registry"),
    error: z.string().optional(),
    restarts: z.number().int().describe('restarts of instances that exited on their own'),
    last_exit: z
      .object({ instance: z.string(), version: z.number().int(), code: z.number().int().nullable(), reason: z.string(), at: z.string() })
      .optional(),
    instances: z.array(InstanceView),
    slots: z
      .array(
        z.object({
          state: z.string().describe('starting, running, suspending, suspended, resuming, snapshotting, snapshotted, restoring, backoff, stopping or stopped'),
          instance: z.string().describe('the instance in this position now (empty when snapshotted or restarting)'),
          in_flight: z.number().int().describe('requests and connections it serves now'),
          health: z.enum(['healthy', 'unhealthy']).optional().describe("what the app's health_check said last (unhealthy after retries failures in a row), when it has one"),
          node: z.string().optional().describe("the node whose sandbox runs the instance, when it is not the app's own node (its own was at its instance cap)"),
          since: z.string().describe('when it entered this state'),
          origin: z.enum(['boot', 'ready_snapshot', 'snapshot']).optional().describe('how its instance came to be: booted, restored from the version\'s ready snapshot (scale-out, pool spares), or from its own snapshot'),
          frozen: z.boolean().optional().describe('Status only: the kernel\'s (cgroup freezer) or QEMU\'s own answer to whether the instance is frozen now'),
        }),
      )
      .optional()
      .describe('the serving version\'s instance positions and their lifecycle states (issue 8: suspended when idle)'),
  })
  .meta({ id: 'AppDetails' });

export const ServiceResponse = z.object({ service: ServiceView });
export const ListResponse = z.object({ services: z.array(ServiceView) });
export const DeleteResponse = z.object({});
export const ResolveResponse = z
  .object({ url: z.string().describe('raw address of a ready instance (M3O: the end provider url)'), app_url: z.string().describe('the app\'s address on the edge') });
export const RegionsRequest = z.object({});
export const RegionsResponse = z.object({ regions: z.array(z.string()) });
export const ReserveRequest = z.object({ name: AppName });
export const ReserveResponse = z
  .object({
    reservation: z.object({ name: z.string(), owner: z.string(), created: z.string(), expires: z.string(), token: z.string() }),
  });

const iso = (at: number) => new Date(at).toISOString();

export function serviceView(state: AppState): z.input<typeof ServiceView> {
  const { record, instances } = state;
  const { settings } = record;
  const hidden = settings.hidden_env;
  return {
    id: record.id,
    name: record.name,
    port: settings.port,
    env_vars: shownEnvVars(settings.env_vars, hidden),
    secrets: hidden?.secrets ?? [],
    hidden_env: Object.keys(hidden?.env ?? {}).sort(),
    ...(hidden?.files?.length ? { secret_files: secretFilesShown(hidden) } : {}),
    status: state.status,
    url: state.url,
    backend: state.backend,
    created: iso(record.createdAt),
    updated: iso(record.updatedAt),
    region: 'local',
    repo: '',
    branch: '',
    custom_domains: [],
    project: record.projectName,
    image: record.image,
    digest: record.digest,
    version: record.version,
    memory: settings.memory,
    cpus: settings.cpus,
    min_instances: settings.min_instances,
    max_instances: settings.max_instances,
    concurrency: settings.concurrency,
    idle_timeout: settings.idle_timeout,
    pool: settings.pool,
    volumes: settings.volumes,
    tcp: settings.tcp,
    ...(state.tcpPort ? { tcp_port: state.tcpPort } : {}),
    outbound: settings.outbound,
    ...(settings.stop_signal ? { stop_signal: settings.stop_signal } : {}),
    ...(settings.stop_timeout ? { stop_timeout: settings.stop_timeout } : {}),
    ...(settings.entrypoint ? { entrypoint: settings.entrypoint } : {}),
    ...(settings.command ? { command: settings.command } : {}),
    ...(settings.stack ? { stack: settings.stack } : {}),
    ...(settings.link_aliases ? { link_aliases: settings.link_aliases } : {}),
    ...(settings.health_check ? { health_check: settings.health_check } : {}),
    ...(settings.follow_tag ? { follow_tag: true } : {}),
    links: settings.links,
    ...(record.error ? { error: redactHidden(record.error, hidden) } : {}),
    restarts: state.restarts,
    ...(state.lastExit
      ? { last_exit: { instance: state.lastExit.instance, version: state.lastExit.version, code: state.lastExit.code, reason: state.lastExit.reason, at: iso(state.lastExit.at) } }
      : {}),
    slots: state.slots.map((slot) => ({
      state: slot.state,
      instance: slot.instance,
      in_flight: slot.inFlight,
      ...(slot.health ? { health: slot.health } : {}),
      ...(slot.node ? { node: slot.node } : {}),
      since: iso(slot.since),
      origin: slot.origin,
      ...(slot.frozen !== undefined ? { frozen: slot.frozen } : {}),
    })),
    instances: instances.map((instance) => ({
      id: instance.id,
      version: instance.version,
      state: instance.state,
      driver: instance.driver,
      started: iso(instance.startedAt),
      ...(instance.endedAt ? { ended: iso(instance.endedAt) } : {}),
      ...(instance.exitReason !== undefined ? { exit_code: instance.exitCode ?? null, exit_reason: instance.exitReason } : {}),
    })),
  };
}

/**
 * env_vars as shown: never a value the app holds hidden, and never ALTO_KEY (functions deployed
 * before hidden env kept their key there).
 */
function shownEnvVars(envVars: Record<string, string>, hidden: HiddenEnv | undefined): Record<string, string> {
  const shown: Record<string, string> = {};
  for (const [name, value] of Object.entries(envVars)) if (name !== 'ALTO_KEY' && hidden?.env[name] !== value) shown[name] = value;
  return shown;
}

/** A log line as shown: hidden values replaced by their names. */
export function logLineView(line: AppLogLine & { node?: string }, hidden?: HiddenEnv): z.input<typeof LogLineView> {
  return { at: iso(line.at), stream: line.stream, line: redactHidden(line.line, hidden), instance: line.instance, version: line.version, ...(line.node ? { node: line.node } : {}) };
}

export function logsText(lines: AppLogLine[], hidden?: HiddenEnv): string {
  return lines.map((line) => redactHidden(line.stream === 'system' ? `alto: ${line.line}` : line.line, hidden)).join('\n');
}

export function reservationView(reservation: ReservationRecord, token: string): z.input<typeof ReserveResponse> {
  return {
    reservation: {
      name: reservation.name,
      owner: reservation.projectName,
      created: iso(reservation.createdAt),
      expires: iso(reservation.expiresAt),
      token,
    },
  };
}
