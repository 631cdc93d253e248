/**
 * @module compute/apps/secrets
 * Secrets handed to apps and functions. A secret reaches an app only when named at deploy
 * (`secrets: ["stripe-key"]`, injected as STRIPE_KEY), and only if the deploying key may read
 * secrets itself (the `secret` scope or `*`, or an admin or owner key): deploying must not be a
 * way around the scopes. What an app gets this way (the secrets, and a function's own key) is
 * its hidden env: it runs with it, but Status, List and Logs show the names, never the values,
 * and only a key as strong as the one that put it there may change the app (else it could
 * deploy code that prints it). A secret may also reach an app as a file, `/run/secrets/<target>`
 * (`secret_files`, compose's `secrets`): kept the same way, never in its env.
 */
import { randomBytes } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import type { CallContext, Tenant } from '../../platform/service.js';
import { namespaceOf } from '../../platform/tenancy.js';

/** Env an app runs with whose values are never shown. */
export interface HiddenEnv {
  /** Variable -> value (secrets, and a function's ALTO_KEY). */
  env: Record<string, string>;
  /** The secrets named at deploy, read again at each update. */
  secrets: string[];
  /** The environment the secrets are read from. */
  environment: string;
  /** Scopes a key needs to change the app besides `secret` (those of a function's own key). */
  scopes: string[];
  /** Secrets the app sees as files at /run/secrets/<target> (`secret_files`), with their values, read at Run and at each Update. */
  files?: HiddenFile[];
}

/** A secret file as asked for (app/Run's `secret_files`): the secret, its file's name, mode and owner. */
export interface SecretFileRequest {
  secret: string;
  target: string;
  mode: number;
  uid?: number;
  gid?: number;
}

/** A secret file with its value, as the app's hidden env keeps it (sealed in the store). */
export interface HiddenFile extends SecretFileRequest {
  value: string;
}

/** The scopes a key needs to change an app holding `hidden`. */
function requiredScopes(hidden: HiddenEnv): string[] {
  return [...new Set([...hidden.scopes, ...(hidden.secrets.length > 0 || hidden.files?.length ? ['secret'] : [])])];
}

/** Whether the app holds anything hidden (values in its env or secret files). */
export function holdsHidden(hidden: HiddenEnv | undefined): hidden is HiddenEnv {
  return hidden !== undefined && (Object.keys(hidden.env).length > 0 || (hidden.files?.length ?? 0) > 0);
}

/** The files as shown: everything but their values. */
export function secretFilesShown(hidden: HiddenEnv | undefined): SecretFileRequest[] {
  return (hidden?.files ?? []).map(({ value: _value, ...shown }) => shown);
}

/** The env var a secret is injected as: `stripe-key` -> `STRIPE_KEY`, `2fa` -> `_2FA`. */
export function secretVariableName(key: string): string {
  const name = key.toUpperCase().replace(/[^A-Z0-9]/g, '_');
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/** Whether the key holds every one of `scopes` (admin and owner keys, and `*`, hold all). */
export function holdsScopes(tenant: Tenant, scopes: string[]): boolean {
  if (tenant.role !== 'project' || tenant.scopes.includes('*')) return true;
  return scopes.every((scope) => scope !== '*' && tenant.scopes.includes(scope));
}

/** 403 unless the key may read the project's secrets. */
export function assertMayReadSecrets(tenant: Tenant, names: string[]): void {
  if (holdsScopes(tenant, ['secret'])) return;
  throw errors.forbidden(
    `secrets ${names.join(', ')}: this key may not read secrets (it lacks the "secret" scope; its scopes are ${tenant.scopes.join(', ')}); deploy with a key scoped "secret" or "*"`,
  );
}

/**
 * The values of the secrets `names` (top level) in the key's project and `environment`, as env
 * vars; 403 when the key may not read secrets, 400 naming a secret that does not exist.
 */
export async function readSecrets(platform: Platform, tenant: Tenant, environment: string, names: string[]): Promise<Record<string, string>> {
  const values = await readSecretValues(platform, tenant, environment, names);
  return Object.fromEntries(names.map((name) => [secretVariableName(name), values[name]]));
}

/** The secrets' values by key (see readSecrets for the checks). */
async function readSecretValues(platform: Platform, tenant: Tenant, environment: string, names: string[]): Promise<Record<string, string>> {
  if (names.length === 0) return {};
  assertMayReadSecrets(tenant, names);
  if (!platform.findService('secret')) throw errors.badRequest('secrets: this server has no secret service');
  const { endpoint } = platform.findEndpoint('secret', 'Get');
  const scoped: Tenant = { ...tenant, environment, namespace: namespaceOf(tenant.projectId, environment) };
  const context: CallContext = {
    requestId: `app-secrets-${randomBytes(6).toString('hex')}`,
    tenant: scoped,
    platform,
    log: platform.log,
    signal: new AbortController().signal,
  };
  const env: Record<string, string> = {};
  for (const name of names) {
    try {
      const { value } = (await endpoint.handler(endpoint.request.parse({ key: name }), context)) as { value: string };
      env[name] = value;
    } catch (error) {
      if ((error as { status?: number }).status === 404)
        throw errors.badRequest(`secrets: "${name}" is not a secret of project "${tenant.projectName}"${environment ? ` (environment ${environment})` : ''}; secret/Set it first (secret/List shows them)`);
      throw error;
    }
  }
  return env;
}

/**
 * 403 unless `tenant` may change an app holding `hidden`: it must hold the scopes that put it
 * there, or drop it (`secrets: []`), so no key deploys code into an app that carries more than
 * the key may read.
 */
export function assertMayChange(tenant: Tenant, app: string, hidden: HiddenEnv | undefined, dropping: boolean): void {
  if (!holdsHidden(hidden) || dropping || holdsScopes(tenant, requiredScopes(hidden))) return;
  const missing = requiredScopes(hidden).filter((scope) => !holdsScopes(tenant, [scope]));
  throw errors.forbidden(
    `"${app}" runs with hidden env (${[...Object.keys(hidden.env).sort(), ...secretFilesShown(hidden).map((file) => `/run/secrets/${file.target}`)].join(', ')}) that this key may not read: changing it needs a key with the scope${missing.length === 1 ? '' : 's'} ${missing.map((scope) => `"${scope}"`).join(', ')}, or give secrets: [] to drop them`,
  );
}

/**
 * The hidden env an app's Update leaves it with: `requested` secrets (or the ones it had, read
 * again) and, when the key may keep them, its other hidden values (a function's key). A key
 * that may not change the app gets a 403, unless it drops everything with `secrets: []`.
 */
export async function hiddenEnvForUpdate(
  platform: Platform,
  tenant: Tenant,
  app: string,
  current: HiddenEnv | undefined,
  requested: string[] | undefined,
  requestedFiles?: SecretFileRequest[],
): Promise<HiddenEnv | undefined> {
  if (!current && requested === undefined && requestedFiles === undefined) return undefined;
  // Dropping is giving up everything hidden the app holds: `secrets: []` (and `secret_files: []` when it has files).
  const dropping = (requested?.length === 0 || Object.keys(current?.env ?? {}).length === 0) && (requestedFiles?.length === 0 || !current?.files?.length) && (requested !== undefined || requestedFiles !== undefined);
  assertMayChange(tenant, app, current, dropping);
  const keeps = current !== undefined && holdsScopes(tenant, requiredScopes(current));
  const names = requested ?? current?.secrets ?? [];
  const environment = requested === undefined && requestedFiles === undefined && current ? current.environment : tenant.environment;
  const values = await readSecrets(platform, tenant, environment, names);
  const extras: Record<string, string> = {};
  if (keeps) {
    const secretVariables = new Set(current.secrets.map(secretVariableName));
    for (const [name, value] of Object.entries(current.env)) if (!secretVariables.has(name)) extras[name] = value;
  }
  const files = await readSecretFiles(platform, tenant, environment, requestedFiles ?? secretFilesShown(current));
  return { env: { ...extras, ...values }, secrets: names, environment, scopes: keeps ? current.scopes : [], ...(files.length > 0 ? { files } : {}) };
}

/** The secret files asked for, each with its secret's value (the checks of readSecrets). */
export async function readSecretFiles(platform: Platform, tenant: Tenant, environment: string, files: SecretFileRequest[]): Promise<HiddenFile[]> {
  const values = await readSecretValues(platform, tenant, environment, [...new Set(files.map((file) => file.secret))]);
  return files.map((file) => ({ ...file, value: values[file.secret] }));
}

/** Text with every hidden value (of some length, so common words stay) replaced by its name. */
export function redactHidden(text: string, hidden: HiddenEnv | undefined): string {
  if (!hidden) return text;
  let redacted = text;
  for (const [name, value] of Object.entries(hidden.env)) {
    if (value.length < 6) continue;
    redacted = redacted.split(value).join(`[hidden ${name}]`);
  }
  // A file's value whole, then each of its lines (logs come line by line).
  for (const file of hidden.files ?? []) {
    for (const part of [file.value, ...file.value.split('\n').map((line) => line.trim())]) {
      if (part.length < 6) continue;
      redacted = redacted.split(part).join(`[hidden /run/secrets/${file.target}]`);
    }
  }
  return redacted;
}
