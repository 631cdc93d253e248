/**
 * @module platform/transfer/transfer
 * Exports a project into a project archive and imports one as a new project, running every
 * service's section (ServiceDefinition.transfer) and the project's own: its settings and limits.
 *
 * Export streams: each section writes its entries as it reads them, so the archive leaves while
 * the project is read and nothing but one chunk of records is held at a time. It reads a live
 * project: each record is as it was when read, but the archive is not one instant of the whole
 * project (stop writes first for that).
 *
 * Import is all or nothing: the archive is verified whole first (archive.ts), then applied to a
 * project created for it; if anything fails, everything written is removed with the project
 * (the services' deleteProjectData, as projects/Delete does), so no half project stays. Keys are
 * never in an archive: the import makes one new key for the project and returns it once.
 */
import { randomUUID } from 'node:crypto';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { ProjectRecord } from '../../store/control.js';
import { LOG_BYTES_SETTING, LOG_DAYS_SETTING, MIN_LOG_BYTES_PER_PROJECT } from '../app-log-settings.js';
import { LIMIT_NAMES, type LimitName } from '../limit-names.js';
import { REQUEST_LOG_DAYS_SETTING } from '../request-log.js';
import type { Platform } from '../platform.js';
import type { Tenant } from '../service.js';
import { DEFAULT_ENVIRONMENT, NAME_PATTERN, NAME_RULE, namespaceOf } from '../tenancy.js';
import { ArchiveReader, ArchiveWriter, type ArchiveEntry, type ArchiveHeader, type ArchiveManifest } from './archive.js';
import { checkPassphrase, openWithPassphrase, sealWithPassphrase } from './passphrase.js';
import type { ProjectSection, SectionExport, SectionImport, SectionKind } from './section.js';

export type Only = SectionKind | 'all';

export interface ExportOptions {
  only: Only;
  /** Seals the secrets section; without one, secrets are in the archive in clear. */
  passphrase?: string;
  signal: AbortSignal;
}

/** The project's own section: its limits (the ones set on it, not the free tier's). */
const projectSection: ProjectSection = {
  name: 'project',
  kind: 'data',
  async export(context) {
    const limits = await context.platform.stores.quota.getLimits(`project:${context.project.id}`);
    await context.archive.json('project', 'settings.json', { limits, environments: context.environments }, 1);
  },
  async importEntry(context, entry) {
    if (entry.name !== 'settings.json') return context.warn(`project: the entry ${entry.name} is not known to this Alto and was left out`);
    const settings = await entry.json<{ limits?: Record<string, unknown> }>();
    const changes: Partial<Record<LimitName, number | null>> = {};
    const logs: { log_days?: number; log_bytes?: number } = {};
    for (const [name, value] of Object.entries(settings.limits ?? {})) {
      const wholeNumber = typeof value === 'number' && Number.isInteger(value) && value >= 0;
      // The log settings kept beside the limits: applied within this node's caps.
      if (name === REQUEST_LOG_DAYS_SETTING && wholeNumber) await importRequestLogDays(context, value);
      else if ((name === LOG_DAYS_SETTING || name === LOG_BYTES_SETTING) && wholeNumber) logs[name === LOG_DAYS_SETTING ? 'log_days' : 'log_bytes'] = value;
      // Limits this Alto does not know are left out, not refused: an archive of a newer Alto still imports.
      else if ((LIMIT_NAMES as readonly string[]).includes(name) && typeof value === 'number' && Number.isFinite(value) && value >= 0) changes[name as LimitName] = value;
      else context.warn(`project: the limit ${name.slice(0, 60)} is not one this Alto knows; left out`);
    }
    await importAppLogBounds(context, logs);
    if (Object.keys(changes).length === 0) return;
    await context.platform.limits.updateProjectLimits(context.callerRole, context.project.id, changes).catch((error: unknown) => {
      if (isAltoError(error) && error.status === 403) throw errors.forbidden(`the archive sets limits on the project that this key may not set (${error.detail}); import with the admin key`);
      throw error;
    });
  },
};

/** The archive's request log days, within this node's cap (ALTO_REQUEST_LOG_MAX_DAYS), or a warning when it keeps none. */
async function importRequestLogDays(context: SectionImport, days: number): Promise<void> {
  const requestLog = context.platform.requestLog;
  if (!requestLog) return context.warn(`project: request_log_days ${days} left out: this Alto keeps no request log`);
  if (days > requestLog.maxDays) context.warn(`project: request_log_days ${days} is past this Alto's cap; set to ${requestLog.maxDays}`);
  await requestLog.setRetentionDays(context.project.id, Math.min(days, requestLog.maxDays));
}

/** The archive's app log bounds, each brought within this node's bounds (with a warning when it had to be). */
async function importAppLogBounds(context: SectionImport, logs: { log_days?: number; log_bytes?: number }): Promise<void> {
  const appLogs = context.platform.appLogs;
  const within = (name: 'log_days' | 'log_bytes', value: number | undefined, min: number, max: number) => {
    if (value === undefined) return undefined;
    const kept = Math.min(max, Math.max(min, value));
    if (kept !== value) context.warn(`project: ${name} ${value} is outside this Alto's bounds (${min} to ${max}); set to ${kept}`);
    return kept;
  };
  const changes = {
    log_days: within('log_days', logs.log_days, 1, appLogs.maxDays),
    log_bytes: within('log_bytes', logs.log_bytes, MIN_LOG_BYTES_PER_PROJECT, appLogs.maxBytes),
  };
  if (changes.log_days !== undefined || changes.log_bytes !== undefined) await appLogs.set(context.project.id, changes);
}

/** Every section, in the order they are written and applied: settings, data, then code. */
export function projectSections(platform: Platform, only: Only): ProjectSection[] {
  const sections = [projectSection, ...platform.listServices().flatMap((service) => (service.transfer ? [service.transfer] : []))];
  const order = (section: ProjectSection) => (section.kind === 'data' ? 0 : 1);
  return sections.filter((section) => only === 'all' || section.name === 'project' || section.kind === only).sort((left, right) => order(left) - order(right));
}

function contextFor(platform: Platform, caller: Tenant, project: ProjectRecord, signal: AbortSignal) {
  const tenantOf = (environment: string): Tenant => ({
    accountId: project.accountId,
    projectId: project.id,
    projectName: project.name,
    environment,
    keyId: caller.keyId,
    role: 'owner',
    scopes: ['*'],
    namespace: namespaceOf(project.id, environment),
  });
  return {
    platform,
    project,
    signal,
    namespaceOf: (environment: string) => namespaceOf(project.id, environment),
    tenantOf,
    async call(service: string, endpointName: string, environment: string, body: unknown) {
      const { endpoint } = platform.findEndpoint(service, endpointName);
      if (endpoint.stream || endpoint.access === 'public') throw errors.internal(`${service}/${endpointName} cannot be called by a section`);
      const parsed = endpoint.request.safeParse(body);
      if (!parsed.success) throw errors.badRequest(`${service}/${endpointName}: ${parsed.error.issues.map((issue: { path: PropertyKey[]; message: string }) => `${issue.path.join('.') || 'request'}: ${issue.message}`).join('; ')}`);
      const requestId = randomUUID();
      return endpoint.handler(parsed.data, { requestId, platform, log: platform.log.child({ req_id: requestId }), signal, tenant: tenantOf(environment) });
    },
  };
}

/**
 * The project's environments: the default one, every one a key was made for, every one an admin
 * or owner key acted in (recorded by the tenancy), and every one a section holds something in
 * (apps and functions an owner key deployed there, with no key of it). Every section is asked,
 * whatever `--only` picks, so a data-only and a code-only archive of one project name the same
 * environments. What exports carry and the console's environment picker (projects/Environments) lists.
 */
export async function projectEnvironments(platform: Platform, caller: Tenant, project: ProjectRecord, signal: AbortSignal): Promise<string[]> {
  const [keys, recorded] = await Promise.all([platform.stores.control.listKeys(project.id), platform.stores.control.listEnvironments(project.id)]);
  const found = new Set([DEFAULT_ENVIRONMENT, ...keys.map((key) => key.environment), ...recorded]);
  const context = contextFor(platform, caller, project, signal);
  for (const service of platform.listServices()) for (const environment of (await service.transfer?.environments?.(context)) ?? []) found.add(environment);
  return [...found].filter((environment) => NAME_PATTERN.test(environment)).sort();
}

/**
 * Starts writing the archive of the caller's project `name`: returns the writer at once (pipe
 * `writer.output` on) and a promise of the manifest, settled when every section was written.
 */
export async function exportProject(platform: Platform, caller: Tenant, name: string, options: ExportOptions): Promise<{ writer: ArchiveWriter; done: Promise<ArchiveManifest> }> {
  const project = await platform.tenancy.findProject(caller.accountId, name);
  if (options.passphrase !== undefined) checkPassphrase(options.passphrase);
  const sections = projectSections(platform, options.only);
  const environments = await projectEnvironments(platform, caller, project, options.signal);
  const header: ArchiveHeader = {
    format: 'alto-project/1',
    altoVersion: platform.config.version,
    project: project.name,
    createdAt: new Date().toISOString(),
    secrets: options.passphrase !== undefined ? 'passphrase' : 'none',
    only: options.only,
    environments,
  };
  const writer = new ArchiveWriter(header);
  const passphrase = options.passphrase;
  const context: Omit<SectionExport, 'archive'> = {
    ...contextFor(platform, caller, project, options.signal),
    environments,
    sealSecrets: (content) => (passphrase === undefined ? content : sealWithPassphrase(content, passphrase)),
  };
  const done = (async () => {
    await writer.begin();
    for (const section of sections) {
      options.signal.throwIfAborted();
      writer.section(section.name);
      await section.export({ ...context, archive: writer });
    }
    return writer.finish();
  })();
  done.catch((error: Error) => writer.fail(error));
  return { writer, done };
}

export interface ImportOptions {
  /** The new project's name; the archive's project name when absent. */
  as?: string;
  passphrase?: string;
  /** The archive's environments to import under another name (`dev` -> `staging`); the others keep theirs. */
  environments?: Map<string, string>;
  signal: AbortSignal;
}

export interface ImportResult {
  project: ProjectRecord;
  /** The new key of the project (all services, in the environment the archive's default one arrived in): shown once. */
  key: string;
  /** Each environment of the archive and the one it arrived in. */
  environments: Record<string, string>;
  manifest: ArchiveManifest;
  warnings: string[];
}

/** Verifies the archive in `file`, then applies it to a new project of the caller's account, all or nothing. */
export async function importProject(platform: Platform, caller: Tenant, file: string, options: ImportOptions): Promise<ImportResult> {
  const reader = new ArchiveReader(file);
  const manifest = await reader.verify();
  const name = options.as ?? manifest.project;
  if (!NAME_PATTERN.test(name)) throw errors.badRequest(`project name "${name.slice(0, 80)}": ${NAME_RULE}; give another with --as`);
  if (await platform.stores.control.findProject(caller.accountId, name)) {
    throw errors.conflict(`project "${name}" exists already: import under another name (--as NAME), or delete it first; imports never merge into a project`);
  }
  if (manifest.secrets === 'passphrase' && options.passphrase === undefined) {
    throw errors.badRequest('the archive\'s secrets are sealed with a passphrase: give it (--passphrase-file)');
  }
  const mapping = environmentMapping(manifest, options.environments ?? new Map());
  const sections = new Map(projectSections(platform, 'all').map((section) => [section.name, section]));
  const warnings: string[] = [];
  for (const section of Object.keys(manifest.sections)) {
    if (!sections.has(section)) warnings.push(`section ${section}: not known to this Alto (${platform.config.version}); left out`);
  }
  const project = await platform.tenancy.createProject(caller.accountId, name);
  const passphrase = options.passphrase;
  const context: SectionImport = {
    ...contextFor(platform, caller, project, options.signal),
    header: manifest,
    callerRole: caller.role,
    openSecrets: (content, what) => {
      if (manifest.secrets === 'none') return content;
      return openWithPassphrase(content, passphrase ?? '', what);
    },
    environmentOf: (environment) => {
      if (!NAME_PATTERN.test(environment)) throw errors.badRequest(`the archive names the environment "${environment.slice(0, 80)}": ${NAME_RULE}; it was altered`);
      return mapping.get(environment) ?? environment;
    },
    warn: (line) => warnings.push(line),
  };
  try {
    // Each environment arrives as one of the new project: recorded, so one holding only data (no
    // key, app or function of it) is listed and exported again from here.
    for (const environment of manifest.environments ?? []) await platform.stores.control.noteEnvironment(project.id, context.environmentOf(environment));
    for await (const entry of reader.entries()) {
      options.signal.throwIfAborted();
      const section = sections.get(entry.section);
      if (section) await applyEntry(section, context, entry);
    }
    for (const section of sections.values()) {
      if (manifest.sections[section.name]) await section.finishImport?.(context);
    }
    const keyEnvironment = context.environmentOf(DEFAULT_ENVIRONMENT);
    const key = await platform.tenancy.generateKey(caller, { projectName: name, environment: keyEnvironment, scopes: ['*'], description: `made by the import of ${manifest.project} (${manifest.createdAt})` });
    const environments = Object.fromEntries((manifest.environments ?? [DEFAULT_ENVIRONMENT]).map((environment) => [environment, context.environmentOf(environment)]));
    return { project, key: key.secret, environments, manifest, warnings };
  } catch (error) {
    for (const section of sections.values()) await section.abortImport?.(context).catch((cleanup: Error) => platform.log.warn({ err: cleanup, section: section.name }, 'a section could not clean up after a failed import'));
    await removeProject(platform, project).catch((cleanup: Error) => platform.log.error({ err: cleanup, project: project.id }, 'removing a failed import left data behind'));
    throw error;
  }
}

/**
 * Checks an import's environment mapping against the archive: each name mapped is one of the
 * archive's environments (when it lists them), and no two of its environments arrive in one
 * (their apps and records would collide). Answers the mapping to apply.
 */
export function environmentMapping(manifest: ArchiveHeader, asked: Map<string, string>): Map<string, string> {
  for (const [from, to] of asked) {
    for (const name of [from, to]) if (!NAME_PATTERN.test(name)) throw errors.badRequest(`env "${from.slice(0, 40)}:${to.slice(0, 40)}": "${name.slice(0, 40)}" is not an environment name: ${NAME_RULE}`);
  }
  const carried = manifest.environments;
  if (!carried) return asked;
  for (const from of asked.keys()) {
    if (!carried.includes(from)) throw errors.badRequest(`env ${from}:${asked.get(from)}: the archive has no environment "${from}" (it has ${carried.join(', ')})`);
  }
  const arriving = new Map<string, string>();
  for (const environment of carried) {
    const to = asked.get(environment) ?? environment;
    const other = arriving.get(to);
    if (other !== undefined) throw errors.badRequest(`env: the archive's environments "${other}" and "${environment}" would both arrive in "${to}"; map one of them elsewhere (an import never merges)`);
    arriving.set(to, environment);
  }
  return asked;
}

/** Parses `dev:staging` pairs (the CLI's --env, the route's env=). */
export function parseEnvironmentPairs(pairs: string[]): Map<string, string> {
  const mapping = new Map<string, string>();
  for (const pair of pairs) {
    const match = /^([^:]+):([^:]+)$/.exec(pair);
    if (!match) throw errors.badRequest(`env "${pair.slice(0, 80)}": give SOURCE:TARGET, two environment names (dev:staging)`);
    if (mapping.has(match[1])) throw errors.badRequest(`env: the environment "${match[1].slice(0, 40)}" is mapped twice`);
    mapping.set(match[1], match[2]);
  }
  if (mapping.size > 100) throw errors.badRequest('env: at most 100 environments mapped');
  return mapping;
}

async function applyEntry(section: ProjectSection, context: SectionImport, entry: ArchiveEntry): Promise<void> {
  try {
    await section.importEntry(context, entry);
  } catch (error) {
    // Says which entry a refusal is about.
    if (error instanceof AltoError && error.status < 500) throw new AltoError(error.code, error.status, `${entry.path}: ${error.detail}`);
    throw error;
  }
}

/** Removes a project and everything the services keep for it (the rollback of an import). */
async function removeProject(platform: Platform, project: ProjectRecord): Promise<void> {
  await platform.stores.control.deleteProject(project.id);
  for (const service of platform.listServices()) await service.deleteProjectData?.(project.id, platform);
  await platform.stores.quota.deleteLimits(`project:${project.id}`);
}

/** A name for a temporary file of an import. */
export function spoolName(): string {
  return `import-${randomUUID()}.tgz`;
}
