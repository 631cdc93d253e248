/**
 * @module compute/functions/schema
 * The wire schema of the `function` service (zod), with M3O's field names (Deploy: name, source,
 * entrypoint, env_vars, runtime, repo, branch, subfolder, region; Func: id, name, ..., status,
 * url, created, updated). Alto adds `files` (an uploaded folder: path -> base64) to Deploy and
 * Update, and lets Update take everything Deploy does.
 */
import { z } from 'zod';
import { AppName } from '../apps/schema.js';
import type { FunctionState } from './manager.js';

const EnvVars = z
  .record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'env var names: letters, digits and _, not starting with a digit'),
    z.string().refine((value) => !value.includes('\0'), 'env var values cannot hold NUL'),
  )
  .describe('environment variables the function runs with');

const codeFields = {
  source: z.string().max(1_000_000, 'source: at most 1 MB inline; upload a folder (files) or use a repo').optional().describe('inline source code: one JavaScript or TypeScript module'),
  files: z
    .record(z.string(), z.string())
    .optional()
    .describe('a folder of code: relative path -> file content as base64 (what `alto fn deploy <folder>` sends; at most 8 MB, node_modules left out)'),
  repo: z.string().optional().describe('a git repository URL (https://...; a path or file:// on this machine with an admin key)'),
  branch: z.string().optional().describe('branch of repo to deploy (default: the repository\'s default branch)'),
  subfolder: z.string().optional().describe('folder inside repo holding the function'),
  entrypoint: z
    .string()
    .regex(/^$|^[A-Za-z_$][A-Za-z0-9_$]*$/, 'entrypoint: the name of an exported function')
    .optional()
    .describe('the export to call with the JSON body (M3O style); without it the default export takes a Request and returns a Response, or else the export named like the function is called'),
  env_vars: EnvVars.optional(),
  runtime: z.string().optional().describe('nodejs (JavaScript and TypeScript); function/Runtimes lists them'),
  secrets: z
    .array(z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'secrets: each the key of a secret (secret/List shows them)'))
    .max(64, 'secrets: at most 64')
    .refine((names) => new Set(names).size === names.length, 'secrets: names must differ')
    .optional()
    .describe('secrets of the project the function gets as env vars (stripe-key -> STRIPE_KEY); needs a key that may read secrets ("secret" scope or "*"). Update: the new list replaces the old, [] drops them'),
};

export const DeployRequest = z.object({
  name: AppName,
  ...codeFields,
  region: z.string().optional().describe('region to deploy in; this machine is "local"'),
});

export const UpdateRequest = z.object({ name: AppName, ...codeFields });

export const FuncView = z
  .object({
    id: z.string(),
    name: z.string(),
    runtime: z.string(),
    entrypoint: z.string(),
    source: z.string().describe('the inline source, when it was given inline'),
    repo: z.string(),
    branch: z.string(),
    subfolder: z.string(),
    env_vars: z.record(z.string(), z.string()),
    secrets: z.array(z.string()).describe('the secrets it gets (names only: values are never shown)'),
    region: z.string(),
    status: z.string().describe('ACTIVE, DEPLOY_IN_PROGRESS, ERROR (its instance keeps exiting) or OFFLINE (its app is gone)'),
    url: z.string().describe('the function\'s address on the edge: http://<fn>.<project>.<domain>:<port>'),
    image: z.string().describe('the image of the version that serves'),
    version: z.number().int().describe('the app version serving it; each Update that succeeds adds one'),
    created: z.string(),
    updated: z.string(),
  })
  .meta({ id: 'Func' });

export const FunctionResponse = z.object({ function: FuncView });
export const NameRequest = z.object({ name: AppName });
export const CopyRequest = z.object({
  name: AppName,
  environment: z.string().min(1).max(63).describe('the environment of the project to copy the function to (the caller acts in the one it is copied from)'),
});
export const CopyResponse = z.object({
  function: FuncView,
  action: z.enum(['deploy', 'update']).describe('deploy: new in that environment; update: its function of that name was built again with this one\'s code and settings'),
});
export const ListRequest = z.object({});
export const ListResponse = z.object({ functions: z.array(FuncView) });
export const DeleteResponse = z.object({});

export const CallRequest = z.object({
  name: AppName,
  request: z.unknown().optional().describe('the JSON body posted to the function'),
});
export const CallResponse = z.object({ response: z.unknown().describe('the JSON the function answered') });

export const LogsRequest = z.object({
  name: AppName,
  logs_type: z.enum(['build', 'runtime', '']).optional().describe('"build" (the last build), "runtime" (its output) or empty for both'),
  lines: z.number().int().min(1).max(5_000).default(200).describe('runtime lines, the latest (default 200)'),
});
export const LogsResponse = z.object({ logs: z.string() });

export const RuntimesRequest = z.object({});
export const RuntimesResponse = z.object({ runtimes: z.array(z.string()) });
export const RegionsRequest = z.object({});
export const RegionsResponse = z.object({ regions: z.array(z.string()) });

export const ProxyRequest = z
  .object({ id: z.string().optional().describe('the function\'s id (or name)'), name: z.string().optional() })
  .refine((request) => Boolean(request.id || request.name), 'give the function\'s id or name');
export const ProxyResponse = z.object({ url: z.string() });

export const ReserveRequest = z.object({ name: AppName });

function iso(at: number): string {
  return new Date(at).toISOString();
}

const STATUS_OF_APP: Record<string, string> = {
  running: 'ACTIVE',
  deploying: 'DEPLOY_IN_PROGRESS',
  updating: 'DEPLOY_IN_PROGRESS',
  crashing: 'ERROR',
  failed: 'ERROR',
};

export function funcView(state: FunctionState): z.input<typeof FuncView> {
  const { record, app } = state;
  return {
    id: record.id,
    name: record.name,
    runtime: record.runtime,
    entrypoint: record.entrypoint,
    source: record.source,
    repo: record.repo,
    branch: record.branch,
    subfolder: record.subfolder,
    env_vars: record.envVars,
    secrets: record.secrets ?? [],
    region: 'local',
    status: app ? (STATUS_OF_APP[app.status] ?? app.status.toUpperCase()) : 'OFFLINE',
    url: state.url,
    image: record.image,
    version: app?.record.version ?? 0,
    created: iso(record.createdAt),
    updated: iso(record.updatedAt),
  };
}
