/**
 * @module platform/transfer/export-relay
 * A resumed export served by any node of a cloud. An export's spool lives on the node that wrote
 * it, whose id is the first part of the export's id (export-spool.ts); a node asked for an export
 * another node wrote (`GET` with or without Range, `?info`, `DELETE exports/<id>`) relays the
 * request to that node's advertised URL, as the nodes store has it, and passes the answer back
 * as it comes: its status, the headers a download reads (`x-alto-*`, Content-Range,
 * Content-Length), and the body at the pace the client reads it.
 *
 * Only the caller's Authorization and Range go on, with `x-alto-via` (this node's id): the
 * writing node authorises the caller itself (every node reads one store of keys), and a relayed
 * request is never relayed again, as with apps (compute/cluster/routing.ts), so two nodes cannot
 * pass a request back and forth. The writer is a peer, but a broken one must not hold a request:
 * it has RELAY_CONNECT_TIMEOUT_MS to accept the connection, may stay silent at most
 * RELAY_IDLE_TIMEOUT_MS (before its answer or within it), and may send at most the largest
 * archive an import takes. A writer that is not running any more took its spool with it: 410.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { ListedNode, NodeStore } from '../../store/nodes/port.js';
import { DEFAULT_ARCHIVE_LIMITS } from './archive.js';
import { noSuchExport } from './export-spool.js';

/** Says a request came from another node of the cloud (the edge's name for it, edge/h1.ts): it is answered here, never relayed again. */
export const RELAYED_HEADER = 'x-alto-via';
/** How long the writing node has to accept the connection. */
export const RELAY_CONNECT_TIMEOUT_MS = 5_000;
/**
 * How long the writing node may send nothing. A download of an export still being written
 * waits on the export as the writer reads the project: longer than a pause between its chunks.
 */
export const RELAY_IDLE_TIMEOUT_MS = 60_000;

/** The headers of the writer's answer that are passed back (besides every `x-alto-*`). */
const ANSWER_HEADERS = ['content-type', 'content-length', 'content-range', 'content-disposition', 'cache-control', 'retry-after', 'x-request-id'];

/** The node that wrote an export, where other nodes reach it. */
export interface ExportWriter {
  id: string;
  name: string;
  /** Its advertised URL (`--advertise`). */
  url: string;
}

export interface RelayOptions {
  /** This node's id, sent as `x-alto-via`. */
  via: string;
  log: Logger;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** The most bytes of an answer passed on. */
  maxBytes?: number;
}

/**
 * The live node `node` names, from the store: 404 (as for any unknown export) when the store
 * knows no such node, 410 when it is not running.
 */
export async function findExportWriter(nodes: NodeStore, node: string, exportId: string): Promise<ExportWriter> {
  const found: ListedNode | undefined = (await nodes.list(Date.now())).find((listed) => listed.id === node);
  if (!found) throw noSuchExport(exportId);
  if (!found.live) {
    throw new AltoError('not_found', 410, `export "${exportId.slice(0, 100)}" was written on node ${found.name}, which is not running: its spool went with it; export again`);
  }
  return { id: found.id, name: found.name, url: found.advertiseUrl };
}

/**
 * Sends `request` (GET or DELETE of `path`, `?info` kept) to the writer and its answer to
 * `response`. Resolves once the answer is passed on (or the client went away); rejects with
 * a 503 when the writer cannot be reached or fails: before the answer began the route answers
 * it, after that the download is cut and the client resumes from the bytes it holds.
 */
export function relayExport(writer: ExportWriter, path: string, request: IncomingMessage, response: ServerResponse, options: RelayOptions): Promise<void> {
  const target = new URL(`${writer.url.replace(/\/$/, '')}${path}`);
  const headers: OutgoingHttpHeaders = { [RELAYED_HEADER]: options.via };
  if (request.headers.authorization !== undefined) headers.authorization = request.headers.authorization;
  if (request.headers.range !== undefined) headers.range = request.headers.range;
  const connectTimeoutMs = options.connectTimeoutMs ?? RELAY_CONNECT_TIMEOUT_MS;
  const idleTimeoutMs = options.idleTimeoutMs ?? RELAY_IDLE_TIMEOUT_MS;
  const unreachable = (cause: string) =>
    errors.unavailable(`node ${writer.name}, which holds this export, did not answer (${cause}): try again shortly; if that node is not running any more, export again`).withHeaders({ 'retry-after': '5' });

  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      if (!error) return resolve();
      options.log.warn({ err: error, node: writer.name }, 'relaying an export request to the node that wrote it failed');
      // A socket's own error names the peer's address: the client gets its code only (the log has it whole).
      const code = (error as NodeJS.ErrnoException).code;
      reject(isAltoError(error) ? error : unreachable(code === undefined ? error.message : `its connection failed: ${code}`));
    };
    // One connection per relay (no pool): the connect timeout then always times a new connection.
    const outgoing = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { method: request.method, headers, agent: false });
    const connectTimer = setTimeout(() => outgoing.destroy(new Error(`no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    outgoing.once('socket', (socket) => socket.once('connect', () => clearTimeout(connectTimer)));
    // The socket's idle time, before the answer and while its body streams.
    outgoing.setTimeout(idleTimeoutMs, () => outgoing.destroy(new Error(`nothing sent for ${idleTimeoutMs} ms`)));
    outgoing.on('error', (error) => settle(error));

    let answer: IncomingMessage | undefined;
    let clientLeft = false;
    response.once('close', () => {
      // Closed once the answer ended, or cut because the writer's answer broke: not the client's doing.
      if (response.writableFinished || answer?.destroyed) return;
      // The client went away: the writer is not read for it any more.
      clientLeft = true;
      outgoing.destroy();
      if (!answer) settle();
    });
    outgoing.once('response', (received) => {
      clearTimeout(connectTimer);
      if (settled) return void received.destroy();
      answer = received;
      response.writeHead(received.statusCode ?? 502, answerHeaders(received.headers));
      pipeline(received, bounded(options.maxBytes ?? DEFAULT_ARCHIVE_LIMITS.maxTotalBytes), response).then(
        () => settle(),
        (error: Error) => {
          outgoing.destroy();
          settle(clientLeft ? undefined : error);
        },
      );
    });
    outgoing.end();
  });
}

/** The writer's answer headers a client reads; hop-by-hop and anything else stay behind. */
export function answerHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const passed: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && (ANSWER_HEADERS.includes(name) || name.startsWith('x-alto-'))) passed[name] = value;
  }
  return passed;
}

/** Refuses an answer past `maxBytes`: a writer gone wrong must not stream without end. */
function bounded(maxBytes: number): Transform {
  let passed = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      passed += chunk.length;
      if (passed > maxBytes) return callback(new Error(`the answer passed ${maxBytes} bytes, more than any export`));
      callback(null, chunk);
    },
  });
}
