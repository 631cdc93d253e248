/**
 * @module blocks/url/short-urls
 * The logic of the `url` block: checking destinations (only absolute http and https URLs),
 * choosing and checking short ids, building the public short URLs, and the operations the
 * endpoints and the `/u/{id}` redirect call on the storage port.
 */
import { errors } from '../../kit/errors.js';
import { BASE62, randomString } from '../../kit/random.js';
import type { RedirectTarget, ShortUrlRecord, UrlStore } from '../../store/urls/port.js';
import { trimEnd } from '../../kit/text.js';

/** Where the redirect is served; short URLs are `${base}/u/${id}`. */
export const REDIRECT_PREFIX = '/u/';
/** URL-safe, unreserved characters only, so an id needs no escaping in a path. */
export const SHORT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$/;
const GENERATED_ID_LENGTH = 8;
/** Tries before giving up on finding a free random id (62^8 ids: a repeat is already rare). */
const GENERATED_ID_ATTEMPTS = 8;
/** Longer Location headers break common proxies (nginx reads 8 KiB headers by default). */
export const MAX_DESTINATION_LENGTH = 8192;

/** A short URL as the API shows it (M3O's URLPair, plus `permanent` and `updated`). */
export interface UrlPair {
  id: string;
  shortURL: string;
  destinationURL: string;
  hitCount: number;
  permanent: boolean;
  created: string;
  updated: string;
}

function quoted(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/** The destination in canonical form, or a 400 that says why it cannot be shortened. */
export function parseDestination(text: string): string {
  if (text.length > MAX_DESTINATION_LENGTH) {
    throw errors.badRequest(`destinationURL: is ${text.length} characters long; the most is ${MAX_DESTINATION_LENGTH}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(text.trim());
  } catch {
    throw errors.badRequest(
      `destinationURL: ${quoted(text)} is not an absolute URL; give the full address, e.g. https://example.com/page`,
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw errors.badRequest(
      `destinationURL: only http and https URLs can be shortened, not "${parsed.protocol}" URLs`,
    );
  }
  if (!parsed.hostname) throw errors.badRequest(`destinationURL: ${quoted(text)} has no host name`);
  // href is percent-encoded, so it is always safe to send as a Location header.
  return parsed.href;
}

export function checkShortId(id: string, field = 'id'): string {
  if (!SHORT_ID_PATTERN.test(id)) {
    throw errors.badRequest(
      `${field}: ${quoted(id)} is not a valid short id; use 1 to 128 letters, digits, ".", "_", "~" or "-", starting with a letter or digit`,
    );
  }
  return id;
}

/** The short id inside a short URL (`https://any.host/prefix/u/{id}`), whatever its host. */
export function idFromShortUrl(shortUrl: string): string {
  let parsed: URL;
  try {
    parsed = new URL(shortUrl);
  } catch {
    throw errors.badRequest(
      `shortURL: ${quoted(shortUrl)} is not a URL; give the shortURL that Shorten or Create returned, or the id`,
    );
  }
  const match = /\/u\/([^/]+)\/?$/.exec(parsed.pathname);
  if (!match || !SHORT_ID_PATTERN.test(match[1])) {
    throw errors.badRequest(`shortURL: ${quoted(shortUrl)} is not a short URL; short URLs look like https://host/u/{id}`);
  }
  return match[1];
}

/** The id a request names, by `id` or by `shortURL`; both may be given when they agree. */
export function idOfRequest(request: { id?: string; shortURL?: string }): string {
  const byId = request.id ? checkShortId(request.id) : undefined;
  const byShortUrl = request.shortURL ? idFromShortUrl(request.shortURL) : undefined;
  if (byId && byShortUrl && byId !== byShortUrl) {
    throw errors.badRequest(`id and shortURL name different short URLs ("${byId}" and "${byShortUrl}"); give one of them`);
  }
  const id = byId ?? byShortUrl;
  if (!id) throw errors.badRequest('id: give the id or the shortURL of the short URL');
  return id;
}

/**
 * Checks ALTO_PUBLIC_URL, the base of every short URL when set (for a server behind a proxy or
 * on its own domain; otherwise each caller's origin is used). Returns it without a trailing
 * slash, or undefined when it is not set; throws at start when it is not an http(s) URL.
 */
export function checkPublicUrl(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  let parsed: URL;
  try {
    parsed = new URL(value.trim());
  } catch {
    throw new Error(`ALTO_PUBLIC_URL=${quoted(value)} is not a URL; set it to the address users reach Alto at, e.g. https://alto.example.com`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`ALTO_PUBLIC_URL=${quoted(value)} must be an http or https URL`);
  }
  return trimEnd(`${parsed.origin}${parsed.pathname}`, '/');
}

export class ShortUrls {
  constructor(
    readonly store: UrlStore,
    /** From ALTO_PUBLIC_URL; undefined to use each caller's origin. */
    private readonly publicUrl: string | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  shortUrlOf(id: string, origin: string | undefined): string {
    // Without a Host header (HTTP/1.0) there is nothing better to offer than localhost.
    return `${this.publicUrl ?? origin ?? 'http://localhost'}${REDIRECT_PREFIX}${id}`;
  }

  view(record: ShortUrlRecord, origin: string | undefined): UrlPair {
    return {
      id: record.id,
      shortURL: this.shortUrlOf(record.id, origin),
      destinationURL: record.destination,
      hitCount: record.hitCount,
      permanent: record.permanent,
      created: new Date(record.createdAt).toISOString(),
      updated: new Date(record.updatedAt).toISOString(),
    };
  }

  /** Stores a destination under a new random id. */
  async shorten(namespace: string, destinationUrl: string, permanent: boolean): Promise<ShortUrlRecord> {
    const destination = parseDestination(destinationUrl);
    for (let attempt = 0; attempt < GENERATED_ID_ATTEMPTS; attempt++) {
      const id = randomString(GENERATED_ID_LENGTH, BASE62);
      const createdAt = this.now();
      if (await this.store.insert(namespace, { id, destination, permanent, createdAt })) {
        return { id, destination, permanent, hitCount: 0, createdAt, updatedAt: createdAt };
      }
    }
    throw errors.unavailable('could not find a free short id; try again');
  }

  /** Stores a destination under the caller's id, which must be free in every project. */
  async create(namespace: string, id: string | undefined, destinationUrl: string, permanent: boolean): Promise<ShortUrlRecord> {
    if (!id) return this.shorten(namespace, destinationUrl, permanent);
    checkShortId(id);
    const destination = parseDestination(destinationUrl);
    const createdAt = this.now();
    if (await this.store.insert(namespace, { id, destination, permanent, createdAt })) {
      return { id, destination, permanent, hitCount: 0, createdAt, updatedAt: createdAt };
    }
    if (await this.store.get(namespace, id)) {
      throw errors.conflict(`id: "${id}" already exists in this project; call Update to change it, or choose another id`);
    }
    throw errors.conflict(`id: "${id}" is taken; short ids are shared by every project on this server, so choose another`);
  }

  async list(namespace: string, shortUrl?: string): Promise<ShortUrlRecord[]> {
    if (shortUrl) {
      const found = await this.store.get(namespace, idFromShortUrl(shortUrl));
      return found ? [found] : [];
    }
    return this.store.list(namespace);
  }

  async get(namespace: string, id: string): Promise<ShortUrlRecord> {
    const found = await this.store.get(namespace, id);
    if (!found) throw notFound(id);
    return found;
  }

  async update(namespace: string, id: string, changes: { destinationURL?: string; permanent?: boolean }): Promise<ShortUrlRecord> {
    if (changes.destinationURL === undefined && changes.permanent === undefined) {
      throw errors.badRequest('destinationURL: give the new destination (or permanent) to update');
    }
    const destination = changes.destinationURL === undefined ? undefined : parseDestination(changes.destinationURL);
    const updated = await this.store.update(namespace, id, { destination, permanent: changes.permanent, updatedAt: this.now() });
    if (!updated) throw notFound(id);
    return updated;
  }

  async delete(namespace: string, id: string): Promise<void> {
    if (!(await this.store.delete(namespace, id))) throw notFound(id);
  }

  /** The redirect: finds the id in any project; a GET counts one hit, a HEAD does not. */
  follow(id: string, countHit: boolean): Promise<RedirectTarget | undefined> {
    if (!SHORT_ID_PATTERN.test(id)) return Promise.resolve(undefined);
    return this.store.follow(id, countHit);
  }
}

function notFound(id: string) {
  return errors.notFound(`no short URL with id "${id}" in this project; List shows the ones it has`);
}
