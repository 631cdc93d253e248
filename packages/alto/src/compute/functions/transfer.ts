/**
 * @module compute/functions/transfer
 * The functions' section of a project archive (code): per environment and function, its kept
 * source (`function/<env>/<name>/source.tar.gz`, the object the build read, when one is kept)
 * and then its definition (`function/<env>/<name>/function.json`: runtime, entrypoint, env vars,
 * the names of its secrets; archives of Alto before environments moved with them have
 * `function/<name>/...`, the environment in the definition). The import deploys each function
 * again, in its environment (the one the import maps it to), through function/Deploy, from its inline source or from the kept source as an uploaded folder (a
 * repository's function is deployed from the clone that was kept, not cloned again), so it is
 * built for the target and gets a key of the new project. Its build log and versions are not carried.
 */
import { extract as tarExtract } from 'tar-stream';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { errors } from '../../kit/errors.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import { sourceNamespace } from './source-archive.js';
import { MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES } from './source.js';

interface FunctionDefinition {
  name: string;
  runtime: string;
  entrypoint: string;
  sourceKind: 'inline' | 'files' | 'repo';
  source: string;
  repo: string;
  branch: string;
  subfolder: string;
  envVars: Record<string, string>;
  environment: string;
  secrets: string[];
  /** Whether `source.tar.gz` precedes this entry. */
  keptSource: boolean;
}

/** The kept source read last, by function name, until its definition arrives. */
const sources = new WeakMap<object, Map<string, Buffer>>();

export const functionSection: ProjectSection = {
  name: 'function',
  kind: 'code',
  async environments({ platform, project }) {
    return [...new Set((await platform.stores.functions.listOfProject(project.id)).map((record) => record.environment || DEFAULT_ENVIRONMENT))];
  },
  async export({ platform, project, archive }) {
    for (const record of await platform.stores.functions.listOfProject(project.id)) {
      const folder = `${record.environment || DEFAULT_ENVIRONMENT}/${record.name}`;
      let keptSource = false;
      if (record.sourceArchive) {
        const read = await platform.stores.objects.get(sourceNamespace(project.id), record.sourceArchive);
        if (read) {
          // Counted with its definition: one function.
          await archive.stream('function', `${folder}/source.tar.gz`, read.info.size, read.body, 0);
          keptSource = true;
        }
      }
      const definition: FunctionDefinition = {
        name: record.name,
        runtime: record.runtime,
        entrypoint: record.entrypoint,
        sourceKind: record.sourceKind,
        source: record.source,
        repo: record.repo,
        branch: record.branch,
        subfolder: record.subfolder,
        envVars: record.envVars,
        environment: record.environment,
        secrets: record.secrets,
        keptSource,
      };
      await archive.json('function', `${folder}/function.json`, definition, 1);
    }
  },
  async importEntry(context, entry) {
    const parts = entry.name.split('/');
    if (parts.length !== 2 && parts.length !== 3) return context.warn(`function: the entry ${entry.name} is not known to this Alto and was left out`);
    // `<env>/<name>/<file>`, or `<name>/<file>` from an older Alto (the environment is then the definition's).
    const [folderEnvironment, name, file] = parts.length === 3 ? parts : [undefined, parts[0], parts[1]];
    const folder = `${folderEnvironment ?? ''}/${name}`;
    if (file === 'source.tar.gz') {
      if (entry.size > MAX_UPLOAD_BYTES) throw errors.badRequest(`the source of function ${name} is larger than ${MAX_UPLOAD_BYTES} bytes`);
      const kept = sources.get(context) ?? new Map<string, Buffer>();
      kept.set(folder, await entry.buffer());
      sources.set(context, kept);
      return;
    }
    if (file !== 'function.json') return context.warn(`function: the entry ${entry.name} is not known to this Alto and was left out`);
    const definition = await entry.json<FunctionDefinition>();
    if (definition.name !== name) throw errors.badRequest(`function ${name}: its definition is not one Alto writes`);
    const environment = context.environmentOf(folderEnvironment ?? (definition.environment || DEFAULT_ENVIRONMENT));
    const kept = sources.get(context)?.get(folder);
    const code = kept
      ? { files: await filesOf(kept, definition.sourceKind === 'repo' ? definition.subfolder : '') }
      : definition.sourceKind === 'inline'
        ? { source: definition.source }
        : undefined;
    if (!code) throw errors.badRequest(`function ${name}: the archive holds no source for it (its source was not kept on the instance it was exported from); deploy it again there first`);
    sources.get(context)?.delete(folder);
    let secrets = definition.secrets ?? [];
    if (context.header.only === 'code' && secrets.length > 0) {
      context.warn(`function ${name}: runs without its secrets (${secrets.join(', ')}): the archive holds code only; set them and name them with function Update`);
      secrets = [];
    }
    await context.call('function', 'Deploy', environment, {
      name: definition.name,
      ...code,
      ...(definition.entrypoint ? { entrypoint: definition.entrypoint } : {}),
      env_vars: definition.envVars ?? {},
      runtime: definition.runtime || 'nodejs',
      ...(secrets.length ? { secrets } : {}),
    });
  },
};

/**
 * The files of a kept source as function/Deploy takes them (relative path -> base64), below
 * `subfolder` for a repository. Bounded as an upload is; anything but files (folders, links) is left out.
 */
export async function filesOf(archive: Buffer, subfolder: string): Promise<Record<string, string>> {
  const prefix = subfolder.trim().replace(/^\/+|\/+$/g, '');
  const files: Record<string, string> = {};
  let count = 0;
  let bytes = 0;
  const extract = tarExtract();
  const reading = pipeline(Readable.from([archive]), createGunzip(), extract);
  for await (const entry of extract) {
    const path = entry.header.name.replace(/^\.\//, '');
    const chunks: Buffer[] = [];
    for await (const chunk of entry as AsyncIterable<Buffer>) chunks.push(chunk);
    if (entry.header.type !== 'file') continue;
    if (path.split('/').some((part) => part === '..' || part === '') || path.startsWith('/')) throw errors.badRequest(`a function's source holds the path "${path.slice(0, 100)}"`);
    const relative = prefix ? (path.startsWith(`${prefix}/`) ? path.slice(prefix.length + 1) : undefined) : path;
    if (relative === undefined) continue;
    const content = Buffer.concat(chunks);
    bytes += content.length;
    if (++count > MAX_UPLOAD_FILES || bytes > MAX_UPLOAD_BYTES) throw errors.badRequest(`a function's source is larger than an upload may be (${MAX_UPLOAD_FILES} files, ${MAX_UPLOAD_BYTES} bytes)`);
    files[relative] = content.toString('base64');
  }
  await reading;
  return files;
}
