/**
 * @module compute/templates/service
 * The `template` service: a stack of apps deployed as one thing from a template (a compose.yaml,
 * optionally with an alto.yaml; compute/templates/compose.ts reads and checks them).
 *
 * Deploy makes one app per compose service, named `<stack>-<service>`, in dependency order
 * (each Run answers once its app is ready, so a service starts after those it depends on are up),
 * through the app service's own endpoints, so every check, cap and scope of a single deploy holds.
 * Each app is marked with its stack (`settings.stack`, with a digest of its settings that Update
 * compares) and linked to the services of the stack it depends on or whose link variables it
 * names; for each link it also gets `<SERVICE>_SERVICE_HOST` and `_PORT` named after the compose
 * service (the stack's name is the user's choice, the template cannot know it), and
 * `$(<SERVICE>_SERVICE_HOST)` in a value is rewritten to the app's link.
 *
 * Secret parameters of alto.yaml (given with --set, else an existing secret of the same key,
 * else generated) are stored in the project's secrets as `<stack>-<parameter>` and reach the
 * services as hidden env, never as plain env_vars: the compose file sees `$(<VARIABLE>)` where it
 * uses one, expanded inside the instance (compute/sandbox/env-references.ts). Their values are
 * never answered. Compose's top-level secrets (a file of the template, a template variable) are
 * kept the same way as `<stack>-<name>` (one from a secret parameter is that parameter's secret;
 * `external: true` names a secret the project has), and a service that lists them sees each as
 * the file /run/secrets/<target> (app `secret_files`), never in its env. A deploy that fails
 * removes every app and secret it made.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { z } from 'zod';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import { defineService, endpoint, type CallContext } from '../../platform/service.js';
import { APP_NAME, RESETTABLE_SETTINGS } from '../apps/schema.js';
import { holdsScopes, secretVariableName } from '../apps/secrets.js';
import { linkVariablePrefix } from '../sandbox/links.js';
import { planStack, type StackPlan, type StackService } from './compose.js';

/** A stack's name: its apps are `<stack>-<service>`, so it is kept short. */
const STACK_NAME = /^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$/;
const MAX_COMPOSE_BYTES = 256 * 1024;
const MAX_ALTO_BYTES = 64 * 1024;
const MAX_LINKS_PER_SERVICE = 16;
/** Compose's default interval (30 s) would hold a deploy long: until it first passes, a check runs this often unless the template says. */
const HEALTH_INTERVAL_SECONDS = 2;

const StackName = z.string().regex(STACK_NAME, 'name: 1-20 lower-case letters, digits and dashes, not starting or ending with a dash').describe("the stack's name: its apps are <name>-<service>");

const DeployRequest = z.object({
  name: StackName,
  compose: z.string().min(1, 'compose: the text of compose.yaml').max(MAX_COMPOSE_BYTES, `compose: at most ${MAX_COMPOSE_BYTES / 1024} KiB`).describe('the text of the template\'s compose.yaml'),
  alto: z.string().max(MAX_ALTO_BYTES, `alto: at most ${MAX_ALTO_BYTES / 1024} KiB`).optional().describe("the text of the template's alto.yaml (parameters, secrets, the public service)"),
  files: z.record(z.string(), z.string()).optional().describe("the template folder's other files as relative path -> base64 (build contexts, env_file files)"),
  set: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'set: parameter names of letters, digits and _'), z.string().max(4096, 'set: values of at most 4096 characters'))
    .optional()
    .describe("values of the template's parameters (alto template deploy --set KEY=VALUE)"),
});

const StackServiceView = z.object({
  service: z.string().describe('the compose service'),
  app: z.string().describe('the app that runs it'),
  status: z.string(),
  url: z.string().optional().describe('its address on the edge (HTTP services)'),
  tcp_port: z.number().int().optional().describe('its TCP port on the edge (TCP services)'),
});

const StackView = z.object({ name: z.string(), services: z.array(StackServiceView) });

interface AppView {
  name: string;
  status: string;
  url: string;
  tcp_port?: number;
  stack?: { name: string; service: string; digest?: string };
  secrets?: string[];
  secret_files?: { secret: string }[];
}

/**
 * A stack is apps (and secrets): the key must hold what deploying them one by one would need, so
 * the template scope is no way around the app and secret scopes.
 */
function assertScopes(context: CallContext, scopes: string[]): void {
  if (holdsScopes(context.tenant, scopes)) return;
  throw errors.forbidden(`this key may not ${scopes.includes('secret') ? 'deploy apps and keep secrets' : 'manage apps'}: a stack needs the scopes ${scopes.join(', ')} besides template (it has ${context.tenant.scopes.join(', ')})`);
}

/** Calls an endpoint of another service with this call's key and project (its checks and scopes apply). */
async function call<T>(context: CallContext, service: string, name: string, body: unknown): Promise<T> {
  const { endpoint: target } = context.platform.findEndpoint(service, name);
  return (await target.handler(target.request.parse(body), context)) as T;
}

async function appsOf(context: CallContext): Promise<AppView[]> {
  return (await call<{ services: AppView[] }>(context, 'app', 'List', {})).services;
}

function viewOf(app: AppView): z.output<typeof StackServiceView> {
  const tcp = app.tcp_port !== undefined;
  return { service: app.stack?.service ?? app.name, app: app.name, status: app.status, ...(tcp ? { tcp_port: app.tcp_port } : { url: app.url }) };
}

/** `DB_PASSWORD` of stack `shop` is kept as the secret `shop-db-password` (the app sees SHOP_DB_PASSWORD). */
function secretKeyOf(stack: string, parameter: string): string {
  return `${stack}-${parameter.toLowerCase().replaceAll('_', '-')}`;
}

/** The template's files under a build context, relative to it (what a single app deploy uploads). */
function filesUnder(files: Record<string, string>, context: string): Record<string, string> {
  const prefix = context === '.' || context === '' ? '' : `${posix.normalize(context).replace(/\/+$/, '')}/`;
  const under: Record<string, string> = {};
  for (const [path, content] of Object.entries(files)) if (path.startsWith(prefix)) under[path.slice(prefix.length)] = content;
  return under;
}

/** The app settings a service is run with (see the module comment for links and secrets). */
export function runRequestOf(
  stack: string,
  service: StackService,
  plan: StackPlan,
  files: Record<string, string>,
  secretKeys: Map<string, string>,
  composeSecretKeys: Map<string, string> = new Map(),
): Record<string, unknown> {
  const app = `${stack}-${service.name}`;
  // Linked to the services it depends on and those it names (`db:5432`, or their link
  // variables): adding a service to the stack changes (and restarts) only the ones that reach it.
  const texts = [...Object.values(service.environment), ...(service.entrypoint ?? []), ...(service.command ?? [])].join('\n');
  const names = (other: StackService) => texts.includes(`$(${linkVariablePrefix(other.name)}_SERVICE_`) || new RegExp(`(^|[^A-Za-z0-9.-])${other.name}:${other.port}(?![0-9])`).test(texts);
  const reachable = plan.services
    .filter((other) => other !== service && other.port !== undefined)
    .filter((other) => service.dependsOn.some((dependency) => dependency.service === other.name) || names(other))
    .slice(0, MAX_LINKS_PER_SERVICE);
  const env: Record<string, string> = {};
  // Each link under the compose service's name too, then the template's own values.
  for (const other of reachable) {
    const own = linkVariablePrefix(other.name);
    const linked = linkVariablePrefix(`${stack}-${other.name}`);
    env[`${own}_SERVICE_HOST`] = `$(${linked}_SERVICE_HOST)`;
    env[`${own}_SERVICE_PORT`] = `$(${linked}_SERVICE_PORT)`;
  }
  const rewrites = new Map(reachable.map((other) => [linkVariablePrefix(other.name), linkVariablePrefix(`${stack}-${other.name}`)]));
  for (const [name, value] of Object.entries(service.environment)) {
    env[name] = value.replace(/(?<!\$)\$\(([A-Z0-9_]+)_SERVICE_(HOST|PORT)\)/g, (whole, prefix: string, part: string) => {
      const linked = rewrites.get(prefix);
      return linked ? `$(${linked}_SERVICE_${part})` : whole;
    });
  }
  // An app gets the stack's secrets its environment or its own command refers to.
  const secrets = [...secretKeys.values()].filter((key) => texts.includes(`$(${secretVariableName(key)})`));
  const extensions = service.extensions;
  const request: Record<string, unknown> = {
    name: app,
    env_vars: env,
    stack: { name: stack, service: service.name },
    links: reachable.map((other) => `${stack}-${other.name}`),
    // Each linked service by its compose name too: `db:5432` reaches the stack's db.
    ...(reachable.length > 0 ? { link_aliases: Object.fromEntries(reachable.map((other) => [other.name, `${stack}-${other.name}`])) } : {}),
    ...(secrets.length > 0 ? { secrets } : {}),
    // Compose's secrets, as files in /run/secrets: the app's env never holds them.
    ...(service.secrets.length > 0
      ? {
          secret_files: service.secrets.map((use) => ({
            secret: composeSecretKeys.get(use.source) ?? `${stack}-${use.source}`,
            target: use.target,
            mode: use.mode,
            ...(use.uid !== undefined ? { uid: use.uid } : {}),
            ...(use.gid !== undefined ? { gid: use.gid } : {}),
          })),
        }
      : {}),
    // The compose healthcheck decides when an instance is ready: a service that depends on this
    // one (service_healthy) is deployed once this one's Run answered, so once it passed.
    ...(service.healthcheck
      ? {
          health_check: {
            test: service.healthcheck.test,
            interval: service.healthcheck.intervalSeconds ?? HEALTH_INTERVAL_SECONDS,
            timeout: service.healthcheck.timeoutSeconds ?? 30,
            start_period: service.healthcheck.startPeriodSeconds ?? 0,
            ...(service.healthcheck.retries !== undefined ? { retries: service.healthcheck.retries } : {}),
          },
        }
      : {}),
    ...(service.stopSignal ? { stop_signal: service.stopSignal } : {}),
    ...(service.stopGraceSeconds !== undefined ? { stop_timeout: Math.min(600, Math.max(1, Math.round(service.stopGraceSeconds))) } : {}),
    ...(service.entrypoint ? { entrypoint: service.entrypoint } : {}),
    ...(service.command ? { command: service.command } : {}),
    ...(service.volumes.length > 0 ? { volumes: service.volumes.map((volume) => ({ name: volume.name, path: volume.path })) } : {}),
    ...(service.memoryMiB !== undefined ? { memory: Math.max(32, Math.round(service.memoryMiB)) } : {}),
    ...(service.cpus !== undefined ? { cpus: service.cpus } : {}),
    // deploy.replicas asks for instances kept running; without it, a service sleeps when idle.
    ...(service.replicas > 1 ? { min_instances: service.replicas } : {}),
    ...pickSettings(extensions),
  };
  if (service.port !== undefined) {
    if (service.protocol === 'tcp') request.tcp = service.port;
    else request.port = service.port;
  }
  if (service.image) request.image = service.image;
  else if (service.build) {
    request.files = filesUnder(files, service.build.context);
    if (service.build.dockerfile) request.dockerfile = service.build.dockerfile;
    if (Object.keys(service.build.args).length > 0) request.build_args = service.build.args;
    if (Object.keys(request.files as object).length === 0) throw errors.badRequest(`service ${service.name}: its build context ${service.build.context} holds no files`);
  }
  return request;
}

/** App settings a service may give under `x-alto` (as app/Run names them). */
const X_ALTO_SETTINGS = ['min_instances', 'max_instances', 'concurrency', 'idle_timeout', 'memory', 'cpus', 'outbound', 'tcp_port', 'stop_signal', 'stop_timeout'] as const;

function pickSettings(extensions: Record<string, unknown>): Record<string, unknown> {
  const picked: Record<string, unknown> = {};
  for (const key of Object.keys(extensions)) {
    if (!(X_ALTO_SETTINGS as readonly string[]).includes(key)) throw errors.badRequest(`x-alto.${key}: not an app setting a template may give (${X_ALTO_SETTINGS.join(', ')})`);
    picked[key] = extensions[key];
  }
  return picked;
}

/** A secret's value, or undefined when the project has none under `key`. */
async function secretValue(context: CallContext, key: string): Promise<string | undefined> {
  try {
    return (await call<{ value: string }>(context, 'secret', 'Get', { key })).value;
  } catch (error) {
    if (isAltoError(error) && error.status === 404) return undefined;
    throw error;
  }
}

/** A template read and checked for a stack: its plan, files and secrets, nothing made yet. */
interface Prepared {
  stack: string;
  plan: StackPlan;
  files: Record<string, string>;
  /** Secret parameter -> its key in the project's secrets. */
  secretKeys: Map<string, string>;
  /** Compose top-level secret used by a service -> its key in the project's secrets. */
  composeSecretKeys: Map<string, string>;
  /** Secrets to write (new, or given with --set): key -> the value, and the one it had before, if any (put back if the deploy fails). */
  toStore: Map<string, { value: string; previous: string | undefined }>;
}

/**
 * Reads the template twice: first for its parameters and their values (given, default or
 * generated), then with each secret parameter as the reference to its hidden variable.
 */
async function prepare(request: z.output<typeof DeployRequest>, context: CallContext): Promise<Prepared> {
  assertScopes(context, ['app']);
  const stack = request.name;
  const files = request.files ?? {};
  const readBytes = (path: string) => {
    const content = files[posix.normalize(path).replace(/^\.\//, '')];
    return content === undefined ? undefined : Buffer.from(content, 'base64');
  };
  const readFile = (path: string) => readBytes(path)?.toString('utf8');
  const source = { compose: request.compose, alto: request.alto, readFile, readBytes };
  const first = planStack(source, request.set ?? {});
  if (first.parameters.some((parameter) => parameter.secret)) assertScopes(context, ['app', 'secret']);
  const secretKeys = new Map<string, string>();
  const toStore: Prepared['toStore'] = new Map();
  for (const parameter of first.parameters.filter((each) => each.secret)) {
    const key = secretKeyOf(stack, parameter.name);
    secretKeys.set(parameter.name, key);
    const given = request.set?.[parameter.name];
    // A secret kept from an earlier deploy (its data may need it) is used again unless a value is given.
    const previous = await secretValue(context, key);
    if (given !== undefined || previous === undefined) toStore.set(key, { value: given ?? first.values[parameter.name], previous });
  }
  const composeSecretKeys = await composeSecrets(context, stack, first, secretKeys, toStore);
  const references = Object.fromEntries([...secretKeys].map(([parameter, key]) => [parameter, `$(${secretVariableName(key)})`]));
  const plan = planStack(source, { ...(request.set ?? {}), ...references });
  for (const service of plan.services) {
    const app = `${stack}-${service.name}`;
    if (app.length > 40 || !APP_NAME.test(app)) throw errors.badRequest(`service ${service.name}: its app name ${app} is longer than 40 characters; choose a shorter stack name`);
  }
  const volumeUsers = new Map<string, string>();
  for (const service of plan.services)
    for (const volume of service.volumes) {
      const user = volumeUsers.get(volume.name);
      if (user && user !== service.name) throw errors.badRequest(`volume ${volume.name}: used by services ${user} and ${service.name}; a volume has one app at a time, give each service its own`);
      volumeUsers.set(volume.name, service.name);
    }
  return { stack, plan, files, secretKeys, composeSecretKeys, toStore };
}

/**
 * The keys of the compose secrets the services use, adding the values to write to `toStore`: a
 * file's content or a variable's value as `<stack>-<name>` (written when it changed, so a changed
 * file reaches the services), a secret parameter's own secret, or an external secret, which must
 * exist. 400 naming the secret for one that cannot be.
 */
async function composeSecrets(context: CallContext, stack: string, plan: StackPlan, secretKeys: Map<string, string>, toStore: Prepared['toStore']): Promise<Map<string, string>> {
  const used = new Set(plan.services.flatMap((service) => service.secrets.map((use) => use.source)));
  const keys = new Map<string, string>();
  if (used.size === 0) return keys;
  assertScopes(context, ['app', 'secret']);
  const parameterOfKey = new Map([...secretKeys].map(([parameter, key]) => [key, parameter]));
  for (const secret of plan.secrets.filter((each) => used.has(each.name))) {
    if ('external' in secret) {
      if (secret.external.startsWith(`${stack}-`))
        throw errors.badRequest(`compose.yaml: secrets.${secret.name}: the external secret "${secret.external}" is named like the stack's own (${stack}-...), which template/Destroy --volumes deletes; give the project's secret another key`);
      if ((await secretValue(context, secret.external)) === undefined)
        throw errors.badRequest(`compose.yaml: secrets.${secret.name}: the external secret "${secret.external}" is not a secret of this project; secret/Set it first (secret/List shows them)`);
      keys.set(secret.name, secret.external);
      continue;
    }
    if ('environment' in secret && secretKeys.has(secret.environment)) {
      keys.set(secret.name, secretKeys.get(secret.environment)!);
      continue;
    }
    const key = `${stack}-${secret.name}`;
    const parameter = parameterOfKey.get(key);
    if (parameter !== undefined) throw errors.badRequest(`compose.yaml: secrets.${secret.name}: its secret ${key} would be the one of the secret parameter ${parameter}; rename one of them`);
    keys.set(secret.name, key);
    const previous = await secretValue(context, key);
    if (previous !== secret.value) toStore.set(key, { value: secret.value, previous });
  }
  return keys;
}

/** Each service's app settings, with a digest of them in its stack mark: Update compares digests to find what changed. */
function runRequests({ stack, plan, files, secretKeys, composeSecretKeys }: Prepared): Map<string, Record<string, unknown>> {
  const requests = new Map<string, Record<string, unknown>>();
  for (const service of plan.services) {
    const body = runRequestOf(stack, service, plan, files, new Map([...secretKeys].map(([, key]) => [key, key])), composeSecretKeys);
    const digest = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 32);
    body.stack = { name: stack, service: service.name, digest };
    requests.set(service.name, body);
  }
  return requests;
}

async function storeSecrets(context: CallContext, toStore: Prepared['toStore'], made: string[]): Promise<void> {
  for (const [key, { value }] of toStore) {
    await call(context, 'secret', 'Set', { key, value });
    made.push(key);
  }
}

/** Takes back what storeSecrets wrote: a new secret is deleted, one that was there gets its value back. */
async function restoreSecrets(context: CallContext, toStore: Prepared['toStore'], made: string[]): Promise<void> {
  for (const key of made) {
    const previous = toStore.get(key)?.previous;
    await (previous === undefined ? call(context, 'secret', 'Delete', { key }) : call(context, 'secret', 'Set', { key, value: previous })).catch(() => undefined);
  }
}

/**
 * Deploy, Update and Destroy of one stack run one at a time on this node: two deploys of the
 * same name at once would both find it free and write its secrets over each other.
 */
const stackTurns = new Map<string, Promise<unknown>>();

function inTurn<T>(context: CallContext, stack: string, work: () => Promise<T>): Promise<T> {
  const key = `${context.tenant.projectId}/${stack}`;
  const previous = stackTurns.get(key) ?? Promise.resolve();
  const turn = previous.catch(() => undefined).then(work);
  const settled = turn.catch(() => undefined);
  stackTurns.set(key, settled);
  void settled.then(() => {
    if (stackTurns.get(key) === settled) stackTurns.delete(key);
  });
  return turn;
}

/** Whether a service's app is given a secret (env or file) whose value this update writes anew: it restarts to read it. */
function usesChangedSecret(body: Record<string, unknown>, toStore: Prepared['toStore']): boolean {
  const keys = [...((body.secrets as string[] | undefined) ?? []), ...((body.secret_files as { secret: string }[] | undefined) ?? []).map((file) => file.secret)];
  return keys.some((key) => toStore.get(key)?.previous !== undefined);
}

/** Runs (or updates) a service's app, its failure named after the service. */
async function apply(context: CallContext, endpointName: 'Run' | 'Update', service: string, body: Record<string, unknown>): Promise<void> {
  try {
    await call(context, 'app', endpointName, body);
  } catch (error) {
    if (isAltoError(error)) throw new AltoError(error.code, error.status, `service ${service}: ${error.detail}`);
    throw error;
  }
}

function stackView(stack: string, plan: StackPlan, apps: AppView[]): z.output<typeof StackView> {
  const mine = apps.filter((app) => app.stack?.name === stack);
  return { name: stack, services: plan.services.map((service) => mine.find((app) => app.stack?.service === service.name)).filter((app): app is AppView => app !== undefined).map(viewOf) };
}

export const templateService = defineService({
  name: 'template',
  description: 'Stacks of apps deployed as one from a template: a compose.yaml (the Compose Specification) and an optional alto.yaml for parameters, secrets and the public service.',
  priceMicros: 0,
  endpoints: {
    Deploy: endpoint({
      description:
        'Deploy a template as a stack: one app per compose service (<name>-<service>), in dependency order, each linked to the others; secret parameters are kept in secret and never answered. 409 when the stack or one of its app names exists; 400 naming every problem of the template (key and line) before anything is made. A deploy that fails removes what it made.',
      request: DeployRequest,
      response: z.object({
        stack: StackView,
        warnings: z.array(z.string()).describe('what the template asked that was ignored (unknown keys), with their lines'),
        secrets: z.array(z.string()).describe('keys of the secrets the stack uses (generated ones included); their values are never answered'),
        public: z.string().optional().describe('the address of the public service'),
      }),
      example: { name: 'shop', compose: 'services:\n  web:\n    image: ghcr.io/org/web:v1\n    ports: ["8080"]\n' },
      async handler(request, context) {
        return inTurn(context, request.name, async () => {
          const prepared = await prepare(request, context);
          const { stack, plan, secretKeys, composeSecretKeys, toStore } = prepared;
          const existing = await appsOf(context);
          if (existing.some((app) => app.stack?.name === stack)) throw errors.conflict(`stack "${stack}" exists; template/Update changes it, template/Destroy removes it`);
          for (const service of plan.services) {
            const taken = existing.find((app) => app.name === `${stack}-${service.name}`);
            if (taken) throw errors.conflict(`app "${taken.name}" exists (service ${service.name} of the stack would be it); delete it or choose another stack name`);
          }
          // Everything checked: from here, what is made is removed again on failure.
          const madeSecrets: string[] = [];
          const madeApps: string[] = [];
          try {
            await storeSecrets(context, toStore, madeSecrets);
            for (const [service, body] of runRequests(prepared)) {
              await apply(context, 'Run', service, body);
              madeApps.push(body.name as string);
            }
          } catch (error) {
            for (const app of madeApps.reverse()) await call(context, 'app', 'Delete', { name: app }).catch(() => undefined);
            await restoreSecrets(context, toStore, madeSecrets);
            throw error;
          }
          const apps = await appsOf(context);
          const publicApp = plan.public ? apps.find((app) => app.stack?.name === stack && app.stack.service === plan.public?.service) : undefined;
          return {
            stack: stackView(stack, plan, apps),
            warnings: plan.warnings,
            secrets: [...new Set([...secretKeys.values(), ...composeSecretKeys.values()])],
            ...(publicApp && publicApp.tcp_port === undefined ? { public: publicApp.url } : {}),
          };
        });
      },
    }),
    Update: endpoint({
      description:
        "Apply a changed template to a stack as a diff: a service whose settings or build changed is updated (zero-downtime, as app/Update), a new one deployed, one no longer in the template removed (its volumes kept unless volumes is true); the others are left as they run. 404 when there is no such stack.",
      request: DeployRequest.extend({ volumes: z.boolean().optional().describe('delete the volumes of the services removed (default false)') }),
      response: z.object({
        stack: StackView,
        changes: z.array(z.object({ service: z.string(), app: z.string(), change: z.enum(['added', 'updated', 'unchanged', 'removed']) })),
        warnings: z.array(z.string()),
        secrets: z.array(z.string()),
      }),
      example: { name: 'shop', compose: 'services:\n  web:\n    image: ghcr.io/org/web:v2\n    ports: ["8080"]\n' },
      async handler(request, context) {
        return inTurn(context, request.name, async () => {
          const prepared = await prepare(request, context);
          const { stack, plan } = prepared;
          const apps = await appsOf(context);
          const current = apps.filter((app) => app.stack?.name === stack);
          if (current.length === 0) throw errors.notFound(`no stack "${stack}" in this project; template/Deploy makes it`);
          for (const service of plan.services) {
            const taken = apps.find((app) => app.name === `${stack}-${service.name}` && app.stack?.name !== stack);
            if (taken) throw errors.conflict(`app "${taken.name}" exists outside the stack (service ${service.name} would be it); delete it first`);
          }
          await storeSecrets(context, prepared.toStore, []);
          const changed: { service: string; app: string; change: 'added' | 'updated' | 'unchanged' | 'removed' }[] = [];
          for (const [service, body] of runRequests(prepared)) {
            const app = body.name as string;
            const running = current.find((each) => each.stack?.service === service);
            if (!running) {
              await apply(context, 'Run', service, body);
              changed.push({ service, app, change: 'added' });
            } else if (running.stack?.digest !== (body.stack as { digest: string }).digest || usesChangedSecret(body, prepared.toStore)) {
              // What the template no longer gives is taken away, not kept: the env, links and secrets
              // are replaced whole, and a dropped command, entrypoint, health check or stop setting
              // returns to the image's (one the template gives wins over the reset).
              await apply(context, 'Update', service, { links: [], secrets: [], secret_files: [], volumes: [], ...body, replace_env_vars: true, reset: [...RESETTABLE_SETTINGS] });
              changed.push({ service, app, change: 'updated' });
            } else changed.push({ service, app, change: 'unchanged' });
          }
          for (const app of current.filter((each) => !plan.services.some((service) => service.name === each.stack?.service))) {
            await call(context, 'app', 'Delete', { name: app.name, keep_volumes: !request.volumes });
            changed.push({ service: app.stack?.service ?? app.name, app: app.name, change: 'removed' });
          }
          return { stack: stackView(stack, plan, await appsOf(context)), changes: changed, warnings: plan.warnings, secrets: [...new Set([...prepared.secretKeys.values(), ...prepared.composeSecretKeys.values()])] };
        });
      },
    }),
    List: endpoint({
      description: "The project's stacks and their services' apps.",
      request: z.object({}),
      response: z.object({ stacks: z.array(StackView) }),
      example: {},
      async handler(_request, context) {
        assertScopes(context, ['app']);
        const stacks = new Map<string, AppView[]>();
        for (const app of await appsOf(context)) if (app.stack) stacks.set(app.stack.name, [...(stacks.get(app.stack.name) ?? []), app]);
        return { stacks: [...stacks].map(([name, apps]) => ({ name, services: apps.map(viewOf) })) };
      },
    }),
    Destroy: endpoint({
      description: "Remove a stack's apps. Their volumes and the stack's secrets are kept (a new deploy of the stack finds its data and passwords) unless volumes is true.",
      request: z.object({ name: StackName, volumes: z.boolean().optional().describe("also delete the apps' volumes and the stack's secrets (default false)") }),
      response: z.object({ removed: z.array(z.string()).describe('the apps removed') }),
      example: { name: 'shop' },
      async handler(request, context) {
        return inTurn(context, request.name, async () => {
          assertScopes(context, request.volumes ? ['app', 'secret'] : ['app']);
          const apps = (await appsOf(context)).filter((app) => app.stack?.name === request.name);
          if (apps.length === 0) throw errors.notFound(`no stack "${request.name}" in this project; template/List shows them`);
          for (const app of apps) await call(context, 'app', 'Delete', { name: app.name, keep_volumes: !request.volumes });
          if (request.volumes) {
            const used = apps.flatMap((app) => [...(app.secrets ?? []), ...(app.secret_files ?? []).map((file) => file.secret)]);
            const keys = new Set(used.filter((key) => key.startsWith(`${request.name}-`)));
            for (const key of keys) await call(context, 'secret', 'Delete', { key });
          }
          return { removed: apps.map((app) => app.name) };
        });
      },
    }),
  },
});

