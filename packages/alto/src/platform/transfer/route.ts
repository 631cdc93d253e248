/**
 * @module platform/transfer/route
 * The HTTP side of project archives, what `alto projects export/import`, `alto push` and
 * `alto pull` call. Plain routes rather than `/v1` endpoints, because an archive is a stream of
 * any size, not a JSON body:
 *
 * - `GET /admin/projects/export?name=shop[&only=data|code]`: the archive, `application/gzip`,
 *   streamed as it is written. A failure after the first byte cuts the stream: the archive then
 *   has no manifest, and every reader refuses it. The archive is spooled in the data folder as it
 *   is written (export-spool.ts) and the answer names it (`X-Alto-Export: <id>`): a download cut
 *   short goes on with `GET /admin/projects/exports/<id>` and `Range: bytes=N-` (the same bytes;
 *   `X-Alto-Offset` says where the body starts), `?info` says its state, size and sha256 (once
 *   complete), and `DELETE` removes it once the client holds it. Any node of the cloud answers
 *   these: one that did not write the export relays them to the one that did (export-relay.ts).
 *   `&resumable=0` streams without a spool (nothing on disk; a broken download is then exported
 *   again).
 * - `POST /admin/projects/import[?as=shop2]` with the archive as the body: spooled to a file in
 *   the data folder (bounded), verified whole, applied to a new project; answers
 *   `{ project, key, sections, warnings }`, the key shown once.
 *
 * - Resumable uploads, for archives sent over a link that may break: `PUT
 *   /admin/projects/uploads/<id>` with `X-Alto-Offset: N` appends the body at byte N (409 with
 *   the bytes held when N is not that), `GET` says how many bytes are held, and
 *   `POST /admin/projects/import?upload=<id>` imports the upload whole (then removes it). The id
 *   is the client's (16-64 letters, digits, - and _) and belongs to the caller's account; an
 *   upload untouched for a day is removed.
 *
 * All need an admin key or an account owner's key (the projects of the key's account).
 * `X-Alto-Passphrase` (base64 of the UTF-8 passphrase) seals or opens the secrets section.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AltoError, errors } from '../../kit/errors.js';
import { loadNodeId } from '../../kit/node-id.js';
import type { Platform } from '../platform.js';
import { sendJsonAnswer, sendRouteError } from '../route-answers.js';
import type { HttpRoute, Tenant } from '../service.js';
import { DEFAULT_ARCHIVE_LIMITS } from './archive.js';
import { findExportWriter, RELAYED_HEADER, relayExport } from './export-relay.js';
import { ExportSpools, rangeStart, spoolView, writerOfExport } from './export-spool.js';
import { exportProject, importProject, parseEnvironmentPairs, spoolName, type Only } from './transfer.js';

export const TRANSFER_ROUTE_PREFIX = '/admin/projects/';
export const PASSPHRASE_HEADER = 'x-alto-passphrase';
/** Largest archive an import takes, as sent (gzipped). */
const MAX_UPLOAD_BYTES = DEFAULT_ARCHIVE_LIMITS.maxTotalBytes;

export function transferRoute(): HttpRoute {
  return {
    prefix: TRANSFER_ROUTE_PREFIX,
    methods: ['GET', 'POST', 'PUT', 'DELETE'],
    description:
      'Project archives: GET export?name= streams one out (GET exports/<id> with Range resumes it), POST import[?as=][&env=dev:staging] takes one in, PUT uploads/<id> sends one in resumable parts (admin or owner key).',
    async handle(request, response, url, platform) {
      const requestId = randomUUID();
      const abort = new AbortController();
      response.on('close', () => {
        if (!response.writableFinished) abort.abort(new Error('the client went away'));
      });
      try {
        const caller = await managerOf(request, platform);
        const action = url.pathname.slice(TRANSFER_ROUTE_PREFIX.length);
        if (action === 'export' && request.method === 'GET') {
          if (url.searchParams.get('resumable') === '0') return await streamExport(url, request, response, caller, platform, abort.signal);
          return await spoolExport(url, request, response, caller, platform);
        }
        if (action.startsWith('exports/') && (request.method === 'GET' || request.method === 'DELETE')) return await resumeExport(action.slice('exports/'.length), url, request, response, caller, platform);
        if (action === 'import' && request.method === 'POST') return await receiveImport(url, request, response, caller, platform, abort.signal);
        if (action.startsWith('uploads/') && (request.method === 'PUT' || request.method === 'GET')) return await receiveUpload(action.slice('uploads/'.length), request, response, caller, platform);
        throw errors.notFound(`${url.pathname} is not a project archive route: GET ${TRANSFER_ROUTE_PREFIX}export?name=NAME or POST ${TRANSFER_ROUTE_PREFIX}import`);
      } catch (error) {
        sendError(request, response, error, requestId, platform);
      }
    },
  };
}

async function managerOf(request: IncomingMessage, platform: Platform): Promise<Tenant> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (!match) throw errors.unauthorized('send the admin key or an account owner\'s key as "Authorization: Bearer <key>"');
  const tenant = await platform.tenancy.authenticate(match[1]);
  if (tenant.role !== 'admin' && tenant.role !== 'owner') throw errors.forbidden('exporting and importing projects needs the admin key or an account owner\'s key, not a project key');
  return tenant;
}

function onlyOf(url: URL): Only {
  const only = url.searchParams.get('only') ?? 'all';
  if (only !== 'data' && only !== 'code' && only !== 'all') throw errors.badRequest(`only: "data", "code" or "all", not "${only.slice(0, 40)}"`);
  return only;
}

function passphraseOf(request: IncomingMessage): string | undefined {
  const header = request.headers[PASSPHRASE_HEADER];
  if (typeof header !== 'string') return undefined;
  return Buffer.from(header, 'base64').toString('utf8');
}

/** The export spools of each platform (one per process, but tests run several in one). */
const spoolsOf = new WeakMap<Platform, ExportSpools>();

function exportSpools(platform: Platform): ExportSpools {
  let spools = spoolsOf.get(platform);
  if (!spools) {
    spools = new ExportSpools(
      loadNodeId(platform.config.dataDir),
      () => transferFolder(platform),
      (spool, error) => platform.log.error({ err: error, project: spool.project, export: spool.id }, 'exporting a project failed part way'),
    );
    spoolsOf.set(platform, spools);
  }
  return spools;
}

/** An export written to a spool while it is sent, so that a broken download can go on (GET exports/<id>). */
async function spoolExport(url: URL, request: IncomingMessage, response: ServerResponse, caller: Tenant, platform: Platform): Promise<void> {
  const name = url.searchParams.get('name');
  if (!name) throw errors.badRequest('name: give the project to export (?name=shop)');
  const spools = exportSpools(platform);
  spools.admit(caller.accountId);
  // The export goes on when the first download breaks: it stops only if spooling fails.
  const stop = new AbortController();
  const { writer, done } = await exportProject(platform, caller, name, { only: onlyOf(url), passphrase: passphraseOf(request), signal: stop.signal });
  done.catch(() => undefined);
  const spool = await spools
    .start(caller.accountId, name, writer.output, (error) => {
      stop.abort(error);
      writer.fail(error);
    })
    .catch((error: Error) => {
      // No spool: the export must not wait on an output nobody reads.
      stop.abort(error);
      writer.fail(error);
      throw error;
    });
  response.writeHead(200, {
    'content-type': 'application/gzip',
    'content-disposition': `attachment; filename="${name}.tgz"`,
    'cache-control': 'no-store',
    'x-alto-export': spool.id,
    'x-alto-offset': '0',
  });
  await spools.send(spool, 0, response);
}

/**
 * `GET exports/<id>` (Range: bytes=N-, or ?info) and `DELETE exports/<id>`: answered here for an
 * export this node wrote, relayed to the node that wrote it otherwise (unless it came relayed).
 */
async function resumeExport(id: string, url: URL, request: IncomingMessage, response: ServerResponse, caller: Tenant, platform: Platform): Promise<void> {
  const spools = exportSpools(platform);
  const writer = writerOfExport(id);
  if (writer !== undefined && writer !== spools.node && request.headers[RELAYED_HEADER] === undefined) {
    const node = await findExportWriter(platform.stores.nodes, writer, id);
    const path = `${TRANSFER_ROUTE_PREFIX}exports/${encodeURIComponent(id)}${url.searchParams.has('info') ? '?info' : ''}`;
    return await relayExport(node, path, request, response, { via: spools.node, log: platform.log });
  }
  await spools.sweep();
  const spool = spools.find(caller.accountId, id);
  if (request.method === 'DELETE') {
    await spools.release(spool);
    response.writeHead(204, { 'cache-control': 'no-store' });
    return void response.end();
  }
  if (url.searchParams.has('info')) {
    return sendJsonAnswer(response, 200, spoolView(spool));
  }
  if (spool.state === 'failed') throw errors.conflict(`export ${spool.id} failed part way (${spool.failure ?? 'see the server log'}): export again`);
  const offset = rangeStart(request.headers.range);
  if (offset > spool.size && spool.state === 'complete') {
    throw new AltoError('bad_request', 416, `the export is ${spool.size} bytes: a download goes on from at most byte ${spool.size}`).withHeaders({ 'content-range': `bytes */${spool.size}` });
  }
  const headers: Record<string, string> = {
    'content-type': 'application/gzip',
    'content-disposition': `attachment; filename="${spool.project}.tgz"`,
    'cache-control': 'no-store',
    'x-alto-export': spool.id,
    'x-alto-offset': String(offset),
  };
  if (spool.state === 'complete') {
    headers['content-length'] = String(spool.size - offset);
    headers['x-alto-export-sha256'] = spool.sha256!;
    if (request.headers.range !== undefined) headers['content-range'] = spool.size > offset ? `bytes ${offset}-${spool.size - 1}/${spool.size}` : `bytes */${spool.size}`;
  }
  response.writeHead(spool.state === 'complete' && request.headers.range !== undefined && spool.size > offset ? 206 : 200, headers);
  await spools.send(spool, offset, response);
}

/** An export streamed straight to the client, with nothing on disk (`resumable=0`). */
async function streamExport(url: URL, request: IncomingMessage, response: ServerResponse, caller: Tenant, platform: Platform, signal: AbortSignal): Promise<void> {
  const name = url.searchParams.get('name');
  if (!name) throw errors.badRequest('name: give the project to export (?name=shop)');
  const { writer, done } = await exportProject(platform, caller, name, { only: onlyOf(url), passphrase: passphraseOf(request), signal });
  response.writeHead(200, {
    'content-type': 'application/gzip',
    'content-disposition': `attachment; filename="${name}.tgz"`,
    'cache-control': 'no-store',
  });
  const streaming = pipeline(writer.output, response);
  // The receiver gone (or the response failing) stops the export at once.
  streaming.catch((error: Error) => writer.fail(error));
  try {
    await Promise.all([done, streaming]);
  } catch (error) {
    // The stream ends without its manifest: the receiver refuses it as incomplete.
    response.destroy();
    if (!signal.aborted) platform.log.error({ err: error, project: name }, 'exporting a project failed part way');
  }
}

/** Where uploads and spooled imports wait, in the data folder. */
async function transferFolder(platform: Platform): Promise<string> {
  const folder = join(platform.config.dataDir, 'transfer');
  await mkdir(folder, { recursive: true, mode: 0o700 });
  return folder;
}

/** Counts bytes past `start` and refuses an archive larger than an import takes. */
function bounded(start: number): Transform {
  let received = start;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > MAX_UPLOAD_BYTES) return callback(errors.payloadTooLarge(`the archive is larger than the ${MAX_UPLOAD_BYTES} bytes an import takes`));
      callback(null, chunk);
    },
  });
}

const UPLOAD_ID = /^[A-Za-z0-9_-]{16,64}$/;
const UPLOAD_MAX_AGE_MS = 24 * 3600 * 1000;

/** The file of an upload of the caller's account: another account's upload of the same id is another file. */
async function uploadFile(platform: Platform, caller: Tenant, id: string): Promise<string> {
  if (!UPLOAD_ID.test(id)) throw errors.badRequest('upload: an id of 16 to 64 letters, digits, - and _ (the client picks it)');
  const owner = createHash('sha256').update(`${caller.accountId}/${id}`).digest('hex').slice(0, 40);
  return join(await transferFolder(platform), `upload-${owner}.tgz`);
}

async function receiveUpload(id: string, request: IncomingMessage, response: ServerResponse, caller: Tenant, platform: Platform): Promise<void> {
  const file = await uploadFile(platform, caller, id);
  await removeStaleUploads(platform);
  const held = (await stat(file).catch(() => undefined))?.size ?? 0;
  if (request.method === 'PUT') {
    const offset = Number(request.headers['x-alto-offset'] ?? 0);
    if (!Number.isSafeInteger(offset) || offset < 0) throw errors.badRequest('X-Alto-Offset: the byte the body starts at, a whole number');
    if (offset !== held) throw errors.conflict(`the upload holds ${held} bytes: send from byte ${held} (X-Alto-Offset: ${held})`).withHeaders({ 'x-alto-received': String(held) });
    await pipeline(request, bounded(offset), createWriteStream(file, { flags: offset === 0 ? 'w' : 'a', mode: 0o600 }));
  } else request.resume();
  const received = (await stat(file).catch(() => undefined))?.size ?? 0;
  sendJsonAnswer(response, 200, { upload: id, received });
}

async function removeStaleUploads(platform: Platform): Promise<void> {
  const folder = await transferFolder(platform);
  const now = Date.now();
  for (const name of await readdir(folder)) {
    if (!name.startsWith('upload-')) continue;
    const info = await stat(join(folder, name)).catch(() => undefined);
    if (info && now - info.mtimeMs > UPLOAD_MAX_AGE_MS) await rm(join(folder, name), { force: true });
  }
}

async function receiveImport(url: URL, request: IncomingMessage, response: ServerResponse, caller: Tenant, platform: Platform, signal: AbortSignal): Promise<void> {
  const as = url.searchParams.get('as') ?? undefined;
  const environments = parseEnvironmentPairs(url.searchParams.getAll('env'));
  const upload = url.searchParams.get('upload');
  const file = upload ? await uploadFile(platform, caller, upload) : join(await transferFolder(platform), spoolName());
  let imported = false;
  try {
    if (upload) {
      request.resume();
      if (!(await stat(file).catch(() => undefined))) throw errors.notFound(`no upload "${upload}": send the archive first (PUT ${TRANSFER_ROUTE_PREFIX}uploads/${upload})`);
    } else await pipeline(request, bounded(0), createWriteStream(file, { mode: 0o600 }));
    const result = await importProject(platform, caller, file, { as, passphrase: passphraseOf(request), environments, signal });
    imported = true;
    const sections = Object.fromEntries(Object.entries(result.manifest.sections).map(([name, section]) => [name, section.count]));
    sendJsonAnswer(response, 200, {
      project: { id: result.project.id, name: result.project.name },
      key: result.key,
      from: { project: result.manifest.project, alto_version: result.manifest.altoVersion, created: result.manifest.createdAt },
      sections,
      environments: result.environments,
      warnings: result.warnings,
    });
  } finally {
    // An upload stays for another try (another name, the passphrase) until it was imported.
    if (!upload || imported) await rm(file, { force: true });
  }
}

function sendError(request: IncomingMessage, response: ServerResponse, error: unknown, requestId: string, platform: Platform): void {
  // A refused upload may still be coming: close after replying.
  sendRouteError(request, response, error, requestId, platform.log, { what: 'a project archive request failed', bodyRead: request.readableEnded });
}
