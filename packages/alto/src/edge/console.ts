/**
 * @module edge/console
 * Serves the web console (`@alto/console`, built by Vite to static files) at `/` of the edge:
 * `GET /` for a browser (one that accepts text/html) answers the console's index.html, while an
 * API client asking `/` for JSON keeps the edge's JSON answer; `/assets/*` are Vite's hashed
 * files, cached for good; other files at the top of dist/ (`/favicon.svg`) are served as they
 * are. The console routes with the URL's hash (`/#/keys`), so no fallback page is needed.
 */
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { errors } from '../kit/errors.js';
import type { Logger } from '../kit/logger.js';
import { requestIdOf, sendJson } from './http.js';

export interface ConsoleHandler {
  /** The folder the console is served from (the package's dist/). */
  readonly root: string;
  /** Answers the request when it is the console's and returns true; false leaves it to the caller. */
  handle(request: IncomingMessage, response: ServerResponse, url: URL): boolean;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

/** One path segment of a built file: no separators, no `..`, nothing hidden. */
const FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}$/;

/** Hashed file names never change content, so a browser may keep them a year. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * The console's own page: scripts and styles from this origin only, API calls and websockets
 * back to it, and never framed by another site.
 */
const PAGE_HEADERS = {
  'content-type': CONTENT_TYPES['.html'],
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
};

/** The console's dist/ folder, found through the workspace package; undefined when absent. */
export function findConsoleDist(): string | undefined {
  try {
    const packageJson = createRequire(import.meta.url).resolve('@alto/console/package.json');
    return join(dirname(packageJson), 'dist');
  } catch {
    return undefined;
  }
}

/**
 * Builds the console handler, or returns undefined (with one warning) when the console is not
 * built: the API works the same without it.
 */
export function createConsole(log: Logger, distDir: string | undefined = findConsoleDist()): ConsoleHandler | undefined {
  const indexPath = distDir ? join(distDir, 'index.html') : undefined;
  if (!distDir || !indexPath || !existsSync(indexPath)) {
    log.warn(
      { console: distDir ?? '@alto/console not installed' },
      'console: not built, so / answers JSON only; run `npm run build` (or `npx vite build` in packages/console)',
    );
    return undefined;
  }
  const root = distDir;
  const assetsDir = join(root, 'assets');
  // The top-level files (favicon and the like) are known once; index.html is read per request
  // so a rebuild shows without a restart.
  const topLevelFiles = new Set(
    readdirSync(root, { withFileTypes: true })
      .filter((entry) => entry.isFile() && FILE_NAME.test(entry.name) && entry.name !== 'index.html')
      .map((entry) => entry.name),
  );

  function handle(request: IncomingMessage, response: ServerResponse, url: URL): boolean {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const path = url.pathname;
    if (path === '/' || path === '/index.html') {
      if (path === '/' && !wantsHtml(request)) return false;
      sendPage(request, response, indexPath!);
      return true;
    }
    if (path.startsWith('/assets/')) {
      const name = safeName(path.slice('/assets/'.length));
      const file = name ? join(assetsDir, name) : undefined;
      if (!file || !isFile(file)) {
        sendJson(response, 404, errors.notFound(`no console asset at ${path}`).toBody(requestIdOf(request)));
        return true;
      }
      sendFile(request, response, file, IMMUTABLE);
      return true;
    }
    const name = path.slice(1);
    if (topLevelFiles.has(name)) {
      const file = join(root, name);
      if (!isFile(file)) return false;
      sendFile(request, response, file, 'public, max-age=3600');
      return true;
    }
    return false;
  }

  log.info({ console: root }, 'console: served at /');
  return { root, handle };
}

/** A browser navigating asks for text/html; fetch() and curl ask for anything or for JSON. */
function wantsHtml(request: IncomingMessage): boolean {
  const accept = request.headers.accept ?? '';
  return accept.split(',').some((part) => part.trim().toLowerCase().startsWith('text/html'));
}

/** The decoded file name when it is one plain segment, else undefined. */
function safeName(encoded: string): string | undefined {
  let name: string;
  try {
    name = decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
  return FILE_NAME.test(name) && !name.includes('..') ? name : undefined;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function sendPage(request: IncomingMessage, response: ServerResponse, indexPath: string): void {
  const page = readFileSync(indexPath);
  response.writeHead(200, { ...PAGE_HEADERS, 'content-length': page.length });
  response.end(request.method === 'HEAD' ? undefined : page);
}

function sendFile(request: IncomingMessage, response: ServerResponse, file: string, cacheControl: string): void {
  const size = statSync(file).size;
  response.writeHead(200, {
    'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': size,
    'cache-control': cacheControl,
    'x-content-type-options': 'nosniff',
  });
  if (request.method === 'HEAD') {
    response.end();
    return;
  }
  const stream = createReadStream(file);
  stream.once('error', () => response.destroy());
  stream.pipe(response);
}
