/**
 * @module compute/functions/copy
 * function/Copy, what `alto envs copy` runs for each function: a function of the caller's
 * environment deployed (or updated) in another environment of the project with its code, entrypoint,
 * env vars and the names of its secrets. The code is the kept source the function was built
 * from (an uploaded folder, a repository's clone, as project archives carry it), or its inline
 * source; the copy is built again, gets its own key of the destination environment, and reads
 * the destination's secrets of those names (each environment keeps its own values).
 */
import { errors } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import type { FunctionRecord } from '../../store/functions/port.js';
import type { FunctionManager, FunctionOwner, FunctionState } from './manager.js';
import { sourceNamespace } from './source-archive.js';
import { MAX_UPLOAD_BYTES } from './source.js';
import { filesOf } from './transfer.js';

export interface CopiedFunction {
  state: FunctionState;
  /** `deploy`: new in the destination; `update`: the destination's function of that name was built again. */
  action: 'deploy' | 'update';
}

/** The code a copy of `record` is built from: its kept source as files, else its inline source. */
async function codeOf(platform: Platform, record: FunctionRecord): Promise<{ files: Record<string, string> } | { source: string }> {
  if (record.sourceArchive) {
    const read = await platform.stores.objects.get(sourceNamespace(record.projectId), record.sourceArchive);
    if (read) {
      if (read.info.size > MAX_UPLOAD_BYTES) {
        read.body.destroy();
        throw errors.badRequest(`the kept source of function ${record.name} is larger than ${MAX_UPLOAD_BYTES} bytes`);
      }
      const chunks: Buffer[] = [];
      for await (const chunk of read.body as AsyncIterable<Buffer>) chunks.push(chunk);
      return { files: await filesOf(Buffer.concat(chunks), record.sourceKind === 'repo' ? record.subfolder : '') };
    }
  }
  if (record.sourceKind === 'inline') return { source: record.source };
  throw errors.badRequest(`function ${record.name}: its source was not kept (it was deployed before Alto kept sources, or it was too large); deploy it in the other environment with alto fn deploy --env-name`);
}

/** Deploys or updates `name` of `source`'s environment in `destination`'s, and says which. */
export async function copyFunction(platform: Platform, manager: FunctionManager, source: FunctionOwner, destination: FunctionOwner, name: string): Promise<CopiedFunction> {
  const record = await platform.stores.functions.find(source.projectId, source.environment!, name);
  if (!record) throw errors.notFound(`no function "${name}" in environment "${source.environment}" of project "${source.projectName}"; function/List shows them`);
  const code = await codeOf(platform, record);
  const settings = { name, ...code, entrypoint: record.entrypoint, env_vars: record.envVars, secrets: record.secrets };
  const existing = await platform.stores.functions.find(destination.projectId, destination.environment!, name);
  if (existing) return { state: await manager.update(destination, { ...settings, replaceEnvVars: true }), action: 'update' };
  return { state: await manager.deploy(destination, { ...settings, runtime: record.runtime || 'nodejs' }), action: 'deploy' };
}
