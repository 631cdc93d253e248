/**
 * @module kit/public-url
 * The base URL people reach a server at, for links a server hands out: an explicit setting
 * (such as ALTO_PUBLIC_URL, behind a proxy that rewrites the host) or else the origin of the
 * request being answered.
 */

/**
 * Validates a configured base URL and returns it without a trailing slash; undefined when the
 * setting is empty. Throws a sentence naming the setting when it is not an http(s) URL.
 */
export function parseBaseUrl(value: string | undefined, setting: string): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  let parsed: URL;
  try {
    parsed = new URL(value.trim());
  } catch {
    throw new Error(`${setting}=${JSON.stringify(value)} is not a URL; set it to the address users reach the server at, e.g. https://alto.example.com`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`${setting}=${JSON.stringify(value)} must be an http or https URL`);
  }
  return `${parsed.origin}${parsed.pathname}`.replace(/\/+$/, '');
}

/** The configured base URL, else the caller's origin, else localhost (an HTTP/1.0 client sent no Host). */
export function baseUrlOf(configured: string | undefined, origin: string | undefined): string {
  return configured ?? origin ?? 'http://localhost';
}

/** Encodes each `/`-separated part of a path for a URL, keeping the slashes. */
export function encodePathParts(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}
