/**
 * @module store/request-log/port
 * The request-log storage port: one row per API call and per app request through the edge, by
 * project, read newest first with filters and a cursor, and deleted by age per project (the
 * retention sweep) or all at once (a deleted project). Every method takes the project id: a
 * project's reads never see another's rows.
 */

export type RequestKind = 'api' | 'app';

/** The longest path kept; a longer one is cut (and ends with `…`). */
export const MAX_REQUEST_PATH_LENGTH = 512;

export interface RequestLogRow {
  projectId: string;
  /** When the request arrived, ms since the epoch. */
  at: number;
  kind: RequestKind;
  method: string;
  /** The path without its query string, at most MAX_REQUEST_PATH_LENGTH characters. */
  path: string;
  status: number;
  /** From the request's arrival to the end of its answer, in ms (fractions kept to the µs). */
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  /** The first characters of the API key that made the call (never the whole key); null for app requests. */
  keyPrefix: string | null;
  /** The client's address (the TCP peer). */
  clientAddress: string | null;
  /** The request id (X-Request-Id); '' for an app request that came without one. */
  requestId: string;
  /** The app an app request went to; null for API calls. */
  app: string | null;
}

export interface StoredRequestLogRow extends RequestLogRow {
  /** Unique in the store; orders rows of the same millisecond. */
  id: number;
}

/** A row's place in the newest-first order: rows strictly after it are older. */
export interface RequestLogPosition {
  at: number;
  id: number;
}

export interface RequestLogQuery {
  projectId: string;
  /** Rows at or after this time (ms). */
  since?: number;
  /** Rows before this time (ms). */
  until?: number;
  kind?: RequestKind;
  app?: string;
  /** Status between these two, both included (an exact status names it twice; `5xx` is 500..599). */
  statusMin?: number;
  statusMax?: number;
  /** Paths that start with this. */
  pathPrefix?: string;
  /** Rows after this one in the newest-first order (the previous page's last row). */
  after?: RequestLogPosition;
  /** At most this many rows. */
  limit: number;
}

export interface RequestLogStore {
  /** Appends rows (any projects, any order). */
  append(rows: RequestLogRow[]): Promise<void>;
  /** The project's rows matching the query, newest first (by time, then id). */
  read(query: RequestLogQuery): Promise<StoredRequestLogRow[]>;
  /** Deletes at most `limit` of the project's rows older than `before` (ms); returns how many. */
  deleteOlder(projectId: string, before: number, limit: number): Promise<number>;
  /** Deletes every row of the project; returns how many. */
  deleteProject(projectId: string): Promise<number>;
  close?(): Promise<void>;
}
