/**
 * @module cli/profile
 * Where the CLI finds Alto and its key: `--url`/`--key` flags, then `ALTO_URL`/`ALTO_KEY`, then
 * the saved profile (`alto login`), then a local instance (`http://localhost:4000` with the key
 * in `./.alto/admin-key`). Profiles live in `~/.config/alto/config.json`, readable only by you.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../kit/files.js';

export interface Profile {
  url: string;
  key: string;
}

interface ConfigFile {
  current?: string;
  profiles: Record<string, Profile>;
}

export function configPath(): string {
  return process.env.ALTO_CONFIG ?? join(process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'alto', 'config.json');
}

function readConfig(): ConfigFile {
  const path = configPath();
  if (!existsSync(path)) return { profiles: {} };
  return JSON.parse(readFileSync(path, 'utf8')) as ConfigFile;
}

export function saveProfile(name: string, profile: Profile): string {
  const config = readConfig();
  config.profiles[name] = profile;
  config.current = name;
  const path = configPath();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, JSON.stringify(config, null, 2) + '\n', 0o600);
  return path;
}

export interface ConnectionFlags {
  url?: string;
  key?: string;
  profile?: string;
}

export interface Connection {
  url: string;
  key?: string;
  /** Where the settings came from, for messages. */
  source: string;
}

export function resolveConnection(flags: ConnectionFlags): Connection {
  const config = readConfig();
  const profileName = flags.profile ?? process.env.ALTO_PROFILE ?? config.current;
  const profile = profileName ? config.profiles[profileName] : undefined;
  if (flags.profile && !profile) throw new Error(`no profile named "${flags.profile}" in ${configPath()}`);

  const localKeyPath = join(resolve(process.env.ALTO_DATA ?? '.alto'), 'admin-key');
  const localKey = existsSync(localKeyPath) ? readFileSync(localKeyPath, 'utf8').trim() : undefined;
  const localUrl = `http://localhost:${process.env.ALTO_PORT ?? '4000'}`;

  const url = flags.url ?? process.env.ALTO_URL ?? profile?.url ?? localUrl;
  const key = flags.key ?? process.env.ALTO_KEY ?? profile?.key ?? localKey;
  const source = flags.url || flags.key ? 'flags' : process.env.ALTO_URL || process.env.ALTO_KEY ? 'environment' : profile ? `profile "${profileName}"` : `local instance (${localKeyPath})`;
  return { url, key, source };
}
