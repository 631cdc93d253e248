/**
 * @module platform/services/logs
 * `logs/*`: a project's request log, a row for every API call and every app request through the
 * edge (platform/request-log.ts records them). `Read` gives the newest first, filtered by time,
 * kind, app, status and path, a page at a time. How many days a project keeps is its
 * `request_log_days` (projects/Create and Update), within the node's cap.
 */
import { z } from 'zod';
import { errors } from '../../kit/errors.js';
import { component, defineService, endpoint, type CallContext } from '../service.js';
import { RequestLog, DEFAULT_REQUEST_LOG_DAYS, DEFAULT_REQUEST_LOG_MAX_DAYS } from '../request-log.js';
import type { Platform } from '../platform.js';
import type { RequestLogPosition, RequestLogQuery, StoredRequestLogRow } from '../../store/request-log/port.js';

/** Rows `Read` answers by default and at most. */
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
const RFC_3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const DURATION = /^(\d+)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const STATUS = /^([1-5])(\d\d|xx)$/i;
const CURSOR = /^(\d{1,16})\.(\d{1,16})$/;

/** The recorder of this instance's request log, made from the environment. */
export const requestLogComponent = component('request-log', (platform: Platform) => {
  const log = new RequestLog(platform.stores, platform.log.child({ component: 'request-log' }), {
    defaultDays: wholeNumber('ALTO_REQUEST_LOG_DAYS', 0) ?? DEFAULT_REQUEST_LOG_DAYS,
    maxDays: wholeNumber('ALTO_REQUEST_LOG_MAX_DAYS', 0) ?? DEFAULT_REQUEST_LOG_MAX_DAYS,
    flushMs: wholeNumber('ALTO_REQUEST_LOG_FLUSH_MS', 10),
    maxBufferedRows: wholeNumber('ALTO_REQUEST_LOG_BUFFER', 100),
    sweepEveryMs: wholeNumber('ALTO_REQUEST_LOG_SWEEP_MS', 1000),
  });
  log.start();
  // The edge records through the platform: it knows nothing of this service.
  platform.requestLog = log;
  return log;
});

/** A whole number from the environment variable `name`, at least `min`; undefined when unset. */
function wholeNumber(name: string, min: number): number | undefined {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be a whole number of at least ${min}, not "${text}"`);
  return value;
}

/** A time given as RFC 3339 or as a duration back from now (`10m`, `2h`, `7d`), in ms. */
function timeOf(field: string, text: string, now: number): number {
  const trimmed = text.trim();
  const duration = DURATION.exec(trimmed);
  if (duration) return now - Number(duration[1]) * UNIT_MS[duration[2]];
  const at = RFC_3339.test(trimmed) ? Date.parse(trimmed) : NaN;
  if (Number.isNaN(at)) throw errors.badRequest(`${field}: "${text}" is not a time; give RFC 3339 (2026-01-02T15:04:05Z) or a duration back from now (10m, 2h, 7d)`);
  return at;
}

/** `404` → 404..404, `5xx` → 500..599. */
function statusRange(status: string | number): { statusMin: number; statusMax: number } {
  const match = STATUS.exec(String(status).trim());
  if (!match) throw errors.badRequest(`status: "${status}" is neither a status (100 to 599) nor a class (1xx to 5xx)`);
  if (match[2].toLowerCase() === 'xx') return { statusMin: Number(match[1]) * 100, statusMax: Number(match[1]) * 100 + 99 };
  return { statusMin: Number(status), statusMax: Number(status) };
}

function cursorOf(row: StoredRequestLogRow): string {
  return Buffer.from(`${row.at}.${row.id}`).toString('base64url');
}

function positionOf(cursor: string): RequestLogPosition {
  const match = CURSOR.exec(Buffer.from(cursor, 'base64url').toString('latin1'));
  if (!match) throw errors.badRequest('cursor: not a cursor this endpoint gave; pass the "cursor" of the previous answer as it came');
  return { at: Number(match[1]), id: Number(match[2]) };
}

/** The project a logs call is about: the caller's own, or one of its account's for owners. */
async function projectFor(context: CallContext, name: string | undefined): Promise<{ id: string; name: string }> {
  const tenant = context.tenant;
  if (!name || name === tenant.projectName) return { id: tenant.projectId, name: tenant.projectName };
  if (tenant.role === 'project') {
    throw errors.forbidden(`a project key reads only its own project's request log ("${tenant.projectName}"); use an owner or admin key for "${name}"`);
  }
  const project = await context.platform.tenancy.findProject(tenant.accountId, name);
  return { id: project.id, name: project.name };
}

const RequestEntry = z
  .object({
    time: z.string().describe('when the request arrived, RFC 3339 with milliseconds'),
    kind: z.enum(['api', 'app']).describe('an API call, or a request to one of the project\'s apps'),
    method: z.string(),
    path: z.string().describe('the path, without its query string; at most 512 characters'),
    status: z.number().int(),
    duration_ms: z.number().describe('from the request\'s arrival to the end of its answer'),
    bytes_in: z.number().int().describe('bytes of the request\'s body'),
    bytes_out: z.number().int().describe('bytes of the answer (for an app request, its head included)'),
    key_prefix: z.string().optional().describe('the first characters of the API key that made the call'),
    client_address: z.string().optional().describe("the client's address, as the edge saw it"),
    request_id: z.string().optional().describe('the request id (X-Request-Id); for an app request only when the client sent one'),
    app: z.string().optional().describe('the app an app request went to'),
  })
  .meta({ id: 'RequestLogEntry' });

function entryOf(row: StoredRequestLogRow): z.infer<typeof RequestEntry> {
  return {
    time: new Date(row.at).toISOString(),
    kind: row.kind,
    method: row.method,
    path: row.path,
    status: row.status,
    duration_ms: row.durationMs,
    bytes_in: row.bytesIn,
    bytes_out: row.bytesOut,
    ...(row.keyPrefix ? { key_prefix: row.keyPrefix } : {}),
    ...(row.clientAddress ? { client_address: row.clientAddress } : {}),
    ...(row.requestId ? { request_id: row.requestId } : {}),
    ...(row.app ? { app: row.app } : {}),
  };
}

export const logsService = defineService({
  name: 'logs',
  description: "A project's request log: every API call and app request through the edge, newest first.",
  priceMicros: 0,
  components: [requestLogComponent],
  endpoints: {
    Read: endpoint({
      description:
        "The project's request log, newest first: API calls and app requests with time, method, path (no query string), status, " +
        'duration, bytes, key prefix or client address and request id. Filter by since and until (RFC 3339, or 10m, 2h, 7d back ' +
        'from now), kind, app, status (404, or a class such as 5xx) and path prefix; pass the answer\'s cursor to read the next ' +
        'page. Requests of the last quarter second may not be written yet.',
      request: z.object({
        project: z.string().optional().describe("project name; default: the key's own project (a project key may read only its own)"),
        since: z.string().optional().describe('only requests at or after this time: RFC 3339, or a duration back from now (10m, 2h, 7d)'),
        until: z.string().optional().describe('only requests before this time: RFC 3339, or a duration back from now'),
        kind: z.enum(['api', 'app']).optional().describe('only API calls, or only app requests'),
        app: z.string().min(1).max(63).optional().describe('only requests to this app'),
        status: z
          .union([z.number().int().min(100).max(599), z.string().max(3)])
          .optional()
          .describe('only this status (404) or class of statuses (5xx)'),
        path: z.string().min(1).max(512).startsWith('/', 'path: a path prefix starts with "/"').optional().describe('only paths starting with this'),
        limit: z.number().int().min(1).max(MAX_LIMIT).optional().describe(`how many requests at most (default ${DEFAULT_LIMIT}, at most ${MAX_LIMIT})`),
        cursor: z.string().max(64).optional().describe('the cursor of the previous answer: the page after it'),
      }),
      response: z.object({
        project: z.string(),
        requests: z.array(RequestEntry),
        cursor: z.string().optional().describe('present when there may be more: pass it to read the next page'),
      }),
      example: { kind: 'api', status: '5xx', since: '1h', limit: 50 },
      async handler(request, context) {
        const project = await projectFor(context, request.project);
        const now = Date.now();
        const query: RequestLogQuery = { projectId: project.id, limit: request.limit ?? DEFAULT_LIMIT };
        if (request.since !== undefined) query.since = timeOf('since', request.since, now);
        if (request.until !== undefined) query.until = timeOf('until', request.until, now);
        if (query.since !== undefined && query.until !== undefined && query.since >= query.until) {
          throw errors.badRequest(`since (${request.since}) is not before until (${request.until})`);
        }
        if (request.kind) query.kind = request.kind;
        if (request.app) query.app = request.app;
        if (request.status !== undefined) Object.assign(query, statusRange(request.status));
        if (request.path) query.pathPrefix = request.path;
        if (request.cursor) query.after = positionOf(request.cursor);
        const requestLog = context.platform.use(requestLogComponent);
        // What was recorded before this call is in its answer.
        await requestLog.flush();
        const rows = await context.platform.stores.requestLog.read(query);
        const last = rows[rows.length - 1];
        return {
          project: project.name,
          requests: rows.map(entryOf),
          ...(last && rows.length === query.limit ? { cursor: cursorOf(last) } : {}),
        };
      },
    }),
  },
  async deleteProjectData(projectId, platform) {
    await platform.use(requestLogComponent).deleteProject(projectId);
  },
});
