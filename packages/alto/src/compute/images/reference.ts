/**
 * @module compute/images/reference
 * Image references as people write them (`redis:7`, `ghcr.io/org/app@sha256:...`,
 * `localhost:5000/app:v2`), parsed by the rules of the distribution project's `reference`
 * package: the first path component is a registry host only when it has a `.` or a `:` or is
 * `localhost`; otherwise the image is on Docker Hub, whose official images live under `library/`
 * and whose API answers at `registry-1.docker.io`.
 */
import { errors } from '../../kit/errors.js';

export const DOCKER_HUB = 'docker.io';
/**
 * The registry name under which images pushed to Alto's own registry are recorded
 * (`alto.local/<project id>/<name>:<tag>`), whatever host the client pushed to; never pulled from.
 */
export const LOCAL_REGISTRY = 'alto.local';
const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/;

export interface ImageReference {
  /** Registry as named in references: `docker.io`, `ghcr.io`, `localhost:5000`. */
  registry: string;
  /** Repository path inside the registry: `library/redis`, `org/app`. */
  repository: string;
  tag?: string;
  digest?: string;
}

export function isDigest(text: string): boolean {
  return DIGEST.test(text);
}

/** Normalizes a registry name: every Docker Hub alias becomes `docker.io`, hosts lower-case. */
export function normalizeRegistry(registry: string): string {
  const lower = registry.toLowerCase().replace(/^https?:\/\//, '').replace(/\/+$/, '');
  return DOCKER_HUB_ALIASES.has(lower) ? DOCKER_HUB : lower;
}

/** The host the distribution API answers at for a registry name. */
export function apiHostOf(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
}

/** True for registries on this machine (`localhost`, 127.0.0.0/8, `[::1]`), which may speak plain HTTP. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(0, registry.indexOf(']') + 1) : registry.split(':')[0];
  return host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '[::1]';
}

/**
 * Parses a reference; a reference with neither tag nor digest gets the tag `latest`.
 * Throws a 400 that says which part is wrong.
 */
export function parseReference(text: string): ImageReference {
  const input = text.trim();
  if (!input) throw errors.badRequest('the image reference is empty; write it like redis:7 or ghcr.io/org/app:v1');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      throw errors.badRequest(`"${digest}" in "${input}" is not a digest; write sha256: and 64 lower-case hex digits`);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw errors.badRequest(`"${tag}" in "${input}" is not a valid tag (letters, digits, _ . -, at most 128, not starting with . or -)`);
    }
  }
  let registry = DOCKER_HUB;
  let path = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      if (!HOST.test(first)) throw errors.badRequest(`"${first}" in "${input}" is not a valid registry host`);
      registry = normalizeRegistry(first);
      path = rest.slice(firstSlash + 1);
    }
  }
  if (!path) throw errors.badRequest(`"${input}" names no repository; write it like redis:7 or ghcr.io/org/app:v1`);
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw errors.badRequest(
        `"${component}" in "${input}" is not a valid repository name component (lower-case letters and digits, separated by . _ __ or -)`,
      );
    }
  }
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (registry.length + 1 + path.length > 255) throw errors.badRequest(`the repository name in "${input}" is longer than 255 characters`);
  if (!tag && !digest) tag = 'latest';
  return { registry, repository: path, tag, digest };
}

/** The repository's full name: `docker.io/library/redis`. */
export function repositoryName(reference: ImageReference): string {
  return `${reference.registry}/${reference.repository}`;
}

/** The canonical text of a reference: `docker.io/library/redis:7`, `ghcr.io/org/app@sha256:...`. */
export function formatReference(reference: ImageReference): string {
  let text = repositoryName(reference);
  if (reference.tag) text += `:${reference.tag}`;
  if (reference.digest) text += `@${reference.digest}`;
  return text;
}

/** The shortest text that means the same reference, as `docker` prints it: `redis:7`. */
export function familiarReference(reference: ImageReference): string {
  let name = repositoryName(reference);
  if (reference.registry === DOCKER_HUB) {
    name = reference.repository.startsWith('library/') ? reference.repository.slice('library/'.length) : reference.repository;
  }
  if (reference.tag) name += `:${reference.tag}`;
  if (reference.digest) name += `@${reference.digest}`;
  return name;
}
