/**
 * @module cli/envs
 * `alto envs copy SRC DST [--dry-run]`: every app of one environment of the key's project run
 * (or updated) in another with the same definition: image, port, env vars, the names of the
 * secrets it gets, sizes, scaling, volumes (empty in the copy: data is not copied), links,
 * entrypoint, command, health check; then every function deployed (or built again) there with
 * its code, entrypoint, env vars and secrets' names (function/Copy, which builds from the source
 * the function was built from). Secrets' values are not copied: each environment has its
 * own (that is what environments are for), so the copy reads the destination's secrets of the
 * same names. It needs a key that may act in both environments (an admin or owner key: `--env-name`'s
 * header, X-Alto-Environment), and calls the `app` service by name, like cli/apps.ts.
 */
import type { Command } from 'commander';
import { AltoError, type Alto, type AppDetailsInput, type AppListResponse } from '@alto/sdk';
import { RUN_SETTINGS } from '../compute/apps/run-settings.js';
import { dim, green, printJson, wantsJson } from './output.js';
import type { CommandHelpers } from './usage.js';

type Flags = { json?: boolean; url?: string; key?: string; profile?: string; dryRun?: boolean };

/** One app's copy: run anew, or an update of the destination's app of that name. */
interface CopyStep {
  app: string;
  action: 'run' | 'update';
  image: string;
}

/** The request that gives an app of another environment this app's definition. */
export function runRequestOf(app: AppDetailsInput): Record<string, unknown> {
  const request: Record<string, unknown> = { name: app.name, image: app.image };
  for (const name of RUN_SETTINGS) if (app[name] !== undefined) request[name] = app[name];
  return request;
}

async function appsOf(alto: Alto): Promise<AppDetailsInput[]> {
  return (await alto.transport.call<AppListResponse>('app', 'List', {})).services;
}

/** One function's copy: deployed anew, or the destination's function of that name built again. */
interface FunctionStep {
  function: string;
  action: 'deploy' | 'update';
}

/** The names of the functions (a function is copied by deploying it, not its app). */
async function functionNamesOf(alto: Alto): Promise<Set<string>> {
  try {
    const listed = await alto.transport.call<{ functions?: { name: string }[] }>('function', 'List', {});
    return new Set((listed.functions ?? []).map((each) => each.name));
  } catch (error) {
    // A key without the function scope sees no functions: every app is then the key's own.
    if (error instanceof AltoError && error.status === 403) return new Set();
    throw error;
  }
}

export function addEnvironmentCommands(program: Command, { remote, action, client }: CommandHelpers): void {
  const envs = program.command('envs').description("the environments of the key's project");
  remote(
    envs
      .command('copy <source> <destination>')
      .description("run every app and deploy every function of one environment in another with the same definition (image or code, settings, env vars, secrets' names; not volumes' data nor secrets' values)")
      .option('--dry-run', 'list what would be run, deployed or updated, changing nothing'),
  ).action(
    action(async (source: string, destination: string, flags: Flags) => {
      if (source === destination) throw new Error('name two different environments: envs copy <source> <destination>');
      const from = client({ ...flags, envName: source } as Flags);
      const to = client({ ...flags, envName: destination } as Flags);
      const functions = await functionNamesOf(from);
      const apps = (await appsOf(from)).filter((app) => !functions.has(app.name));
      const existing = new Set((await appsOf(to)).map((app) => app.name));
      const existingFunctions = functions.size > 0 ? await functionNamesOf(to) : new Set<string>();
      const steps: CopyStep[] = apps.map((app) => ({ app: app.name, action: existing.has(app.name) ? 'update' : 'run', image: app.image }));
      const functionSteps: FunctionStep[] = [...functions].sort().map((name) => ({ function: name, action: existingFunctions.has(name) ? 'update' : 'deploy' }));
      if (!flags.dryRun) {
        for (const app of apps) {
          const request = runRequestOf(app);
          if (existing.has(app.name)) await to.transport.call('app', 'Update', { ...request, replace_env_vars: true });
          else await to.transport.call('app', 'Run', request);
        }
        for (const step of functionSteps) {
          const copied = await from.transport.call<{ action: FunctionStep['action'] }>('function', 'Copy', { name: step.function, environment: destination });
          step.action = copied.action;
        }
      }
      const result = { source, destination, dry_run: Boolean(flags.dryRun), apps: steps, functions: functionSteps };
      if (wantsJson(flags)) return printJson(result, flags);
      if (steps.length === 0 && functionSteps.length === 0) process.stdout.write(dim(`environment "${source}" has no apps or functions to copy\n`));
      for (const step of steps) {
        const verb = flags.dryRun ? (step.action === 'run' ? 'would run' : 'would update') : step.action === 'run' ? green('ran') : green('updated');
        process.stdout.write(`${verb} ${step.app} ${dim(`(${step.image}) in ${destination}`)}\n`);
      }
      for (const step of functionSteps) {
        const verb = flags.dryRun ? (step.action === 'deploy' ? 'would deploy' : 'would update') : step.action === 'deploy' ? green('deployed') : green('updated');
        process.stdout.write(`${verb} function ${step.function} ${dim(`in ${destination}`)}\n`);
      }
    }),
  );
}
