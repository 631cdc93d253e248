/**
 * @module platform/transfer/section
 * The registration point through which each service carries its part of a project in a project
 * archive: a service declares a `ProjectSection` (ServiceDefinition.transfer), which writes its
 * entries on export and applies them on import. The platform runs the sections and knows none of
 * their data; each block keeps its section beside its logic (blocks/db/transfer.ts...).
 */
import type { KeyRole, ProjectRecord } from '../../store/control.js';
import type { Platform } from '../platform.js';
import type { Tenant } from '../service.js';
import type { ArchiveEntry, ArchiveHeader, ArchiveWriter } from './archive.js';

/** What `--only` picks: the project's records and objects, or its apps and functions. */
export type SectionKind = 'data' | 'code';

export interface ProjectSection {
  /** The section's folder in the archive, e.g. `db`. */
  name: string;
  kind: SectionKind;
  /**
   * The environments of the project this section holds something in, beyond those its keys
   * name and those recorded when an owner key acted in them (it may deploy or write into any
   * environment with X-Alto-Environment): the export carries each of them for every section.
   */
  environments?(context: SectionContext): Promise<string[]>;
  /** Writes the project's entries of this section. */
  export(context: SectionExport): Promise<void>;
  /** Applies one entry, in the order the export wrote them. */
  importEntry(context: SectionImport, entry: ArchiveEntry): Promise<void>;
  /** After every entry of every section was applied (apps are deployed here, once their secrets and data are in). */
  finishImport?(context: SectionImport): Promise<void>;
  /** The import failed and is being rolled back: removes what the section kept outside the project (temporary files). */
  abortImport?(context: SectionImport): Promise<void>;
}

export interface SectionContext {
  platform: Platform;
  project: ProjectRecord;
  /** The storage namespace of one of the project's environments. */
  namespaceOf(environment: string): string;
  /** A tenant of the project (an owner's, all scopes), for calling the services' own logic. */
  tenantOf(environment: string): Tenant;
  signal: AbortSignal;
  /**
   * Calls an endpoint of a service as the project (an owner's tenant of `environment`), with the
   * request checked by the endpoint's own schema: how a section reaches logic it does not own.
   */
  call<T = any>(service: string, endpoint: string, environment: string, request: unknown): Promise<T>;
}

export interface SectionExport extends SectionContext {
  /** The project's environments: `dev`, every one a key was made for or an owner key acted in, and every one a section holds something in (apps, functions). */
  environments: string[];
  archive: ArchiveWriter;
  /** Seals an entry that carries secrets with the passphrase when one was given; else returns it as it is. */
  sealSecrets(content: Buffer): Buffer;
}

export interface SectionImport extends SectionContext {
  header: ArchiveHeader;
  /** The role of the key that runs the import: what it may set (limits above the free tier need the admin's). */
  callerRole: KeyRole;
  /** Opens an entry `sealSecrets` wrote (refusing a wrong or missing passphrase). */
  openSecrets(content: Buffer, what: string): Buffer;
  /**
   * The target's environment for an environment name read from the archive: checked before it
   * names a namespace, and mapped as the import was asked (`--env dev:staging`); an environment
   * not mapped keeps its name.
   */
  environmentOf(name: string): string;
  /** A line for the import's report: something not carried over as it was, and why. */
  warn(line: string): void;
}
