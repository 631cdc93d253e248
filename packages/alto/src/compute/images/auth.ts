/**
 * @module compute/images/auth
 * Registry authentication: the `WWW-Authenticate` challenge a registry answers 401 with
 * (`Bearer realm=...,service=...,scope=...` or `Basic realm=...`), and the credentials saved by
 * `alto registry login`, kept in the data folder in a file only the server's user can read
 * (as Docker keeps them in `~/.docker/config.json`).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../../kit/files.js';
import { normalizeRegistry } from './reference.js';

export interface Challenge {
  /** Lower-case scheme: `bearer`, `basic`. */
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235): one or more challenges, each a scheme and
 * comma-separated `name=value` or `name="quoted \"value\""` parameters.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '');
  const challenges: Challenge[] = [];
  const token = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)/y;
  const param = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/y;
  let position = 0;
  while (position < text.length) {
    token.lastIndex = position;
    const scheme = token.exec(text);
    if (!scheme) break;
    position = token.lastIndex;
    const challenge: Challenge = { scheme: scheme[1].toLowerCase(), params: {} };
    for (;;) {
      param.lastIndex = position;
      const match = param.exec(text);
      if (!match) break;
      // A `name=` followed by a new scheme is the next challenge's first parameter only when it
      // has no `=`; param's regex needs `=`, so a bare scheme word ends this loop.
      challenge.params[match[1].toLowerCase()] = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : match[3];
      position = param.lastIndex;
    }
    challenges.push(challenge);
    while (position < text.length && /[\s,]/.test(text[position])) position++;
  }
  return challenges;
}

export interface RegistryCredentials {
  username: string;
  password: string;
}

interface CredentialsFile {
  registries: Record<string, RegistryCredentials & { savedAt: string }>;
}

/** Credentials per registry, in one JSON file with mode 0600, rewritten atomically. */
export class CredentialStore {
  constructor(private readonly path: string) {}

  private read(): CredentialsFile {
    if (!existsSync(this.path)) return { registries: {} };
    try {
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as CredentialsFile;
      return { registries: parsed.registries ?? {} };
    } catch (error) {
      throw new Error(`the registry credentials file ${this.path} is not valid JSON: ${(error as Error).message}`);
    }
  }

  private write(file: CredentialsFile): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.path, JSON.stringify(file, null, 2) + '\n', 0o600);
  }

  get(registry: string): RegistryCredentials | undefined {
    const entry = this.read().registries[normalizeRegistry(registry)];
    return entry ? { username: entry.username, password: entry.password } : undefined;
  }

  set(registry: string, credentials: RegistryCredentials): void {
    const file = this.read();
    file.registries[normalizeRegistry(registry)] = { ...credentials, savedAt: new Date().toISOString() };
    this.write(file);
  }

  /** Returns whether there was something to remove. */
  remove(registry: string): boolean {
    const file = this.read();
    const name = normalizeRegistry(registry);
    if (!file.registries[name]) return false;
    delete file.registries[name];
    this.write(file);
    return true;
  }

  list(): { registry: string; username: string; savedAt: string }[] {
    return Object.entries(this.read().registries)
      .map(([registry, entry]) => ({ registry, username: entry.username, savedAt: entry.savedAt }))
      .sort((a, b) => a.registry.localeCompare(b.registry));
  }
}
