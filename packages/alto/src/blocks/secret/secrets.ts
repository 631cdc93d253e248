/**
 * @module blocks/secret/secrets
 * The secret block's logic: names checked and paths normalised, values sealed before they reach
 * the store and opened after, with the tenant's namespace bound into every ciphertext.
 */
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { SecretStore } from '../../store/secrets/port.js';
import type { SecretCipher } from '../../kit/master-key.js';
import { trimBoth } from '../../kit/text.js';

export interface SecretLimits {
  /** Longest key and longest path, in UTF-8 bytes. */
  maxNameBytes: number;
  /** Largest value, in UTF-8 bytes. */
  maxValueBytes: number;
}

export const DEFAULT_SECRET_LIMITS: SecretLimits = {
  maxNameBytes: 512,
  maxValueBytes: 64 * 1024,
};

export interface SecretValue {
  key: string;
  path: string;
  value: string;
  created: string;
  updated: string;
}

export class SecretBlock {
  constructor(
    readonly store: SecretStore,
    private readonly cipher: SecretCipher,
    private readonly log: Logger,
    private readonly limits: SecretLimits = DEFAULT_SECRET_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  async get(namespace: string, rawPath: string, key: string): Promise<SecretValue> {
    const path = this.normalisePath(rawPath);
    this.checkKey(key);
    const stored = await this.store.get(namespace, path, key);
    if (!stored) throw errors.notFound(`secret "${key}"${path ? ` at path "${path}"` : ''} does not exist`);
    let value: string;
    try {
      value = this.cipher.open(stored.ciphertext, { namespace, path, key });
    } catch (error) {
      // Our fault, not the caller's: a wrong master key or a row altered outside Alto.
      this.log.error({ err: error, namespace, path, key }, 'secret: cannot decrypt a stored secret');
      throw errors.internal('this secret cannot be decrypted with the server\'s master key; the server log has the details');
    }
    return {
      key,
      path,
      value,
      created: new Date(stored.createdAt).toISOString(),
      updated: new Date(stored.updatedAt).toISOString(),
    };
  }

  async set(namespace: string, rawPath: string, key: string, value: string): Promise<void> {
    const path = this.normalisePath(rawPath);
    this.checkKey(key);
    const bytes = Buffer.byteLength(value);
    if (bytes > this.limits.maxValueBytes) {
      throw errors.payloadTooLarge(`value: ${bytes} bytes is larger than the ${this.limits.maxValueBytes}-byte limit of a secret`);
    }
    const ciphertext = this.cipher.seal(value, { namespace, path, key });
    await this.store.put(namespace, { path, key, ciphertext, at: this.now() });
  }

  async delete(namespace: string, rawPath: string, key: string): Promise<void> {
    const path = this.normalisePath(rawPath);
    this.checkKey(key);
    await this.store.delete(namespace, path, key);
  }

  async list(namespace: string, rawPath: string): Promise<{ keys: string[]; paths: string[] }> {
    const path = this.normalisePath(rawPath);
    const [keys, paths] = await Promise.all([this.store.listKeys(namespace, path), this.store.listPaths(namespace, path)]);
    return { keys, paths };
  }

  async deleteProject(projectId: string): Promise<number> {
    return this.store.deleteProject(projectId);
  }

  async close(): Promise<void> {
    await this.store.close();
  }

  private checkKey(key: string): void {
    if (key.length === 0) throw errors.badRequest('key: missing; give the key of the secret');
    this.checkName(key, 'key');
  }

  /** "/prod/eu/" → "prod/eu"; empty segments, "." and ".." are refused, not guessed at. */
  private normalisePath(path: string): string {
    const trimmed = trimBoth(path, '/');
    if (trimmed === '') return '';
    this.checkName(trimmed, 'path');
    for (const segment of trimmed.split('/')) {
      if (segment === '' || segment === '.' || segment === '..') {
        throw errors.badRequest(
          `path: "${path}" has an empty, "." or ".." segment; use names separated by single slashes, e.g. "prod/eu"`,
        );
      }
    }
    return trimmed;
  }

  private checkName(name: string, field: 'key' | 'path'): void {
    const bytes = Buffer.byteLength(name);
    if (bytes > this.limits.maxNameBytes) {
      throw errors.badRequest(`${field}: ${bytes} bytes is longer than the ${this.limits.maxNameBytes}-byte limit`);
    }
    if (name.includes('\u0000')) throw errors.badRequest(`${field}: must not contain the NUL character`);
  }
}
