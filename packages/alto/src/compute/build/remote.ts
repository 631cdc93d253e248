/**
 * @module compute/build/remote
 * `ADD <url>` of a build with its network on: the file is fetched by the host for the project,
 * so every connection (and every redirect, at most 5) passes the outbound guard of apps (public
 * addresses only unless the operator allows private ones, the address pinned once checked), the
 * answer is bounded in size and time, and errors never echo the server's bytes.
 */
import { createWriteStream, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { OutboundRefused, pinnedLookup, privateTargetsAllowed, resolveOutbound } from '../../kit/outbound-guard.js';

const MAX_REDIRECTS = 5;
const TIMEOUT_MS = 120_000;

/** Fetches `url` into `path` (at most `maxBytes`); answers the size and the name the URL gives the file. */
export async function fetchForBuild(url: string, path: string, maxBytes: number, refuse: (detail: string) => Error): Promise<{ size: number; name: string }> {
  let current: URL;
  try {
    current = new URL(url);
  } catch {
    throw refuse(`${url} is not a URL`);
  }
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    if (current.protocol !== 'https:' && current.protocol !== 'http:') throw refuse(`${current.protocol} URLs are not fetched; use https://`);
    let target;
    try {
      target = await resolveOutbound(current.hostname, { allowPrivate: privateTargetsAllowed() });
    } catch (error) {
      if (error instanceof OutboundRefused) throw refuse(`${current.host} is not reachable from builds: ${error.detail}`);
      throw refuse(`${current.host} does not resolve`);
    }
    const response = await get(current, pinnedLookup(target), refuse);
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400 && response.headers.location) {
      response.resume();
      current = new URL(response.headers.location, current);
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw refuse(`${current.host} answered ${url} with status ${status}`);
    }
    const declared = Number(response.headers['content-length'] ?? 0);
    if (declared > maxBytes) {
      response.destroy();
      throw refuse(`${url} is larger than ${maxBytes} bytes`);
    }
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        callback(size > maxBytes ? refuse(`${url} is larger than ${maxBytes} bytes`) : null, chunk);
      },
    });
    try {
      await pipeline(response, meter, createWriteStream(path, { mode: 0o600 }));
    } catch (error) {
      rmSync(path, { force: true });
      if (error instanceof Error && 'status' in error) throw error;
      throw refuse(`the download of ${url} broke off`);
    }
    const name = decodeURIComponent(current.pathname.split('/').filter(Boolean).at(-1) ?? '') || 'index.html';
    return { size, name };
  }
  throw refuse(`${url} redirects more than ${MAX_REDIRECTS} times`);
}

function get(url: URL, lookup: ReturnType<typeof pinnedLookup>, refuse: (detail: string) => Error): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const request = send(url, { method: 'GET', lookup, headers: { 'user-agent': 'alto-build' }, agent: false }, resolve);
    request.setTimeout(TIMEOUT_MS, () => request.destroy(refuse(`${url.host} did not answer within ${TIMEOUT_MS / 1000} s`)));
    request.on('error', (error) => reject(error instanceof Error && 'status' in error ? error : refuse(`${url.host} could not be reached`)));
    request.end();
  });
}

/** Whether a COPY or ADD source names a URL. */
export function isUrl(source: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source);
}

