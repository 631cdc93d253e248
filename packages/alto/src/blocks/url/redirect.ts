/**
 * @module blocks/url/redirect
 * `GET /u/{id}`: the public side of a short URL. No key: the id alone finds the URL, in
 * whichever project holds it. 302 (or 301 for permanent URLs) to the destination, counting a
 * hit; HEAD answers the same without counting; unknown ids get a 404 JSON error.
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { errors, type AltoError } from '../../kit/errors.js';
import type { Component, HttpRoute } from '../../platform/service.js';
import { REDIRECT_PREFIX, type ShortUrls } from './short-urls.js';

function sendError(response: ServerResponse, error: AltoError, requestId: string, withBody: boolean): void {
  const payload = JSON.stringify(error.toBody(requestId));
  response.writeHead(error.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    'x-request-id': requestId,
  });
  response.end(withBody ? payload : undefined);
}

export function redirectRoute(shortUrls: Component<ShortUrls>): HttpRoute {
  return {
    prefix: REDIRECT_PREFIX,
    methods: ['GET', 'HEAD'],
    description: 'Follow a short URL: 302 (or 301 when permanent) to its destination.',
    async handle(request, response, url, platform) {
      const requestId = randomUUID();
      const isGet = request.method === 'GET';
      const id = url.pathname.slice(REDIRECT_PREFIX.length).replace(/\/$/, '');
      const target = await platform.use(shortUrls).follow(id, isGet);
      if (!target) {
        sendError(response, errors.notFound(`no short URL "${id}" on this server`), requestId, isGet);
        return;
      }
      response.writeHead(target.permanent ? 301 : 302, {
        location: target.destination,
        // A temporary redirect must come back to us every time, or hits go uncounted.
        ...(target.permanent ? {} : { 'cache-control': 'private, no-store' }),
        'content-length': 0,
        'x-request-id': requestId,
      });
      response.end();
    },
  };
}
