/**
 * @module compute/images/spec
 * `ImageSpec`: what an image says about how to run it (entrypoint, cmd, env, working directory,
 * user, exposed ports, volumes), read from its config into a typed shape the sandboxes use as is.
 */
import type { ImageConfig } from './manifest.js';

export interface ExposedPort {
  port: number;
  protocol: 'tcp' | 'udp' | 'sctp';
}

export interface ImageSpec {
  os: string;
  architecture: string;
  variant?: string;
  /** The executable and its first arguments; empty when the image sets none. */
  entrypoint: string[];
  /** Default arguments (after the entrypoint), or the command when there is no entrypoint. */
  cmd: string[];
  /** Environment in the image's order; a later duplicate overrides an earlier one, as Docker does. */
  env: Record<string, string>;
  /** Working directory; `/` when the image sets none. */
  workingDir: string;
  /** `user`, `uid`, `user:group` or `uid:gid`; empty means root. */
  user: string;
  exposedPorts: ExposedPort[];
  /** Paths the image declares as volumes. */
  volumes: string[];
  labels: Record<string, string>;
  stopSignal?: string;
  /** When the image was built (RFC 3339), if it says. */
  created?: string;
}

/** Reads `80/tcp`, `53/udp` or `8080` (tcp). Entries that are not ports are left out. */
function parsePort(text: string): ExposedPort | undefined {
  const match = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(text.trim());
  if (!match) return undefined;
  const port = Number(match[1]);
  if (port < 1 || port > 65535) return undefined;
  return { port, protocol: (match[2]?.toLowerCase() ?? 'tcp') as ExposedPort['protocol'] };
}

export function imageSpecOf(config: ImageConfig): ImageSpec {
  const runtime = config.config ?? {};
  const env: Record<string, string> = {};
  for (const entry of runtime.Env ?? []) {
    const equals = entry.indexOf('=');
    if (equals <= 0) continue;
    env[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  return {
    os: config.os ?? 'linux',
    architecture: config.architecture ?? 'amd64',
    ...(config.variant ? { variant: config.variant } : {}),
    entrypoint: runtime.Entrypoint ?? [],
    cmd: runtime.Cmd ?? [],
    env,
    workingDir: runtime.WorkingDir || '/',
    user: runtime.User ?? '',
    exposedPorts: Object.keys(runtime.ExposedPorts ?? {})
      .map(parsePort)
      .filter((port): port is ExposedPort => port !== undefined)
      .sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol)),
    volumes: Object.keys(runtime.Volumes ?? {}).sort(),
    labels: { ...(runtime.Labels ?? {}) },
    ...(runtime.StopSignal ? { stopSignal: runtime.StopSignal } : {}),
    ...(config.created ? { created: config.created } : {}),
  };
}
