// @ts-check
/**
 * @module store/request-log/sqlite-writer
 * Request-log rows written to SQLite: a batch as columns (numbers in typed arrays, repeated
 * strings once in a table they index), which is what crosses to the writer's worker thread
 * (sqlite-worker.mjs) cheaply, and its inserts, many rows to a statement and a few hundred to a
 * transaction, each row naming its project by the number `request_log_projects` gives it. Plain
 * JavaScript (checked by tsc through @ts-check) because the worker loads it as it is on disk, in
 * src/ as in dist/.
 */

/**
 * A batch of rows as columns. `-1` in an index column means null.
 * @typedef {object} RequestLogBatch
 * @property {number} length
 * @property {string[]} strings  each string of the batch's repeated columns once
 * @property {Uint32Array} projectId  index into strings
 * @property {Float64Array} at
 * @property {Uint32Array} kind
 * @property {Uint32Array} method
 * @property {Uint32Array} path
 * @property {Uint16Array} status
 * @property {Float64Array} durationMs
 * @property {Float64Array} bytesIn
 * @property {Float64Array} bytesOut
 * @property {Int32Array} keyPrefix
 * @property {Int32Array} clientAddress
 * @property {Int32Array} app
 * @property {string[]} requestId  one per row: request ids rarely repeat
 */

/**
 * @typedef {object} RequestLogRowLike
 * @property {string} projectId
 * @property {number} at
 * @property {string} kind
 * @property {string} method
 * @property {string} path
 * @property {number} status
 * @property {number} durationMs
 * @property {number} bytesIn
 * @property {number} bytesOut
 * @property {string | null} keyPrefix
 * @property {string | null} clientAddress
 * @property {string} requestId
 * @property {string | null} app
 */

export const COLUMNS = 'project, at, kind, method, path, status, duration_ms, bytes_in, bytes_out, key_prefix, client_address, request_id, app';
const COLUMN_COUNT = 13;
/** Rows bound to one INSERT statement. */
const ROWS_PER_STATEMENT = 32;
/** Rows per transaction: about a millisecond of the write lock. */
export const ROWS_PER_TRANSACTION = 512;

/**
 * Rows as columns, each repeated string kept once.
 * @param {RequestLogRowLike[]} rows
 * @returns {RequestLogBatch}
 */
export function batchOfRows(rows) {
  const length = rows.length;
  /** @type {Map<string, number>} */
  const indexes = new Map();
  /** @type {string[]} */
  const strings = [];
  /** @param {string} text */
  const indexOf = (text) => {
    let index = indexes.get(text);
    if (index === undefined) {
      index = strings.push(text) - 1;
      indexes.set(text, index);
    }
    return index;
  };
  /** @param {string | null} text */
  const nullableIndexOf = (text) => (text === null ? -1 : indexOf(text));
  const batch = {
    length,
    strings,
    projectId: new Uint32Array(length),
    at: new Float64Array(length),
    kind: new Uint32Array(length),
    method: new Uint32Array(length),
    path: new Uint32Array(length),
    status: new Uint16Array(length),
    durationMs: new Float64Array(length),
    bytesIn: new Float64Array(length),
    bytesOut: new Float64Array(length),
    keyPrefix: new Int32Array(length),
    clientAddress: new Int32Array(length),
    app: new Int32Array(length),
    /** @type {string[]} */
    requestId: new Array(length),
  };
  for (let row = 0; row < length; row++) {
    const value = rows[row];
    batch.projectId[row] = indexOf(value.projectId);
    batch.at[row] = value.at;
    batch.kind[row] = indexOf(value.kind);
    batch.method[row] = indexOf(value.method);
    batch.path[row] = indexOf(value.path);
    batch.status[row] = value.status;
    batch.durationMs[row] = value.durationMs;
    batch.bytesIn[row] = value.bytesIn;
    batch.bytesOut[row] = value.bytesOut;
    batch.keyPrefix[row] = nullableIndexOf(value.keyPrefix);
    batch.clientAddress[row] = nullableIndexOf(value.clientAddress);
    batch.app[row] = nullableIndexOf(value.app);
    batch.requestId[row] = value.requestId;
  }
  return batch;
}

/**
 * @param {number} count
 * @returns {string}
 */
function placeholders(count) {
  const one = `(${new Array(COLUMN_COUNT).fill('?').join(', ')})`;
  return new Array(count).fill(one).join(', ');
}

/**
 * A writer of batches on `db` (better-sqlite3): `write(batch, from, to)` writes rows `from` to
 * `to` (excluded) in one transaction; `numberOf(projectId)` is the project's number, given it
 * the first time (several connections may race to give it: the table's unique id decides).
 * @param {import('better-sqlite3').Database} db
 * @returns {{ write: (batch: RequestLogBatch, from: number, to: number) => void, numberOf: (projectId: string) => number }}
 */
export function requestLogWriter(db) {
  const insertMany = db.prepare(`INSERT INTO request_log (${COLUMNS}) VALUES ${placeholders(ROWS_PER_STATEMENT)}`);
  const insertOne = db.prepare(`INSERT INTO request_log (${COLUMNS}) VALUES ${placeholders(1)}`);
  const addProject = db.prepare('INSERT INTO request_log_projects (project_id) VALUES (?) ON CONFLICT (project_id) DO NOTHING');
  const projectNumber = db.prepare('SELECT id FROM request_log_projects WHERE project_id = ?').pluck();
  /** @type {Map<string, number>} */
  const numbers = new Map();
  /** @param {string} projectId */
  const numberOf = (projectId) => {
    let number = numbers.get(projectId);
    if (number === undefined) {
      addProject.run(projectId);
      number = /** @type {number} */ (projectNumber.get(projectId));
      numbers.set(projectId, number);
    }
    return number;
  };
  const many = new Array(ROWS_PER_STATEMENT * COLUMN_COUNT);
  const one = new Array(COLUMN_COUNT);
  /**
   * @param {unknown[]} values
   * @param {number} offset
   * @param {RequestLogBatch} batch
   * @param {number} row
   */
  const bind = (values, offset, batch, row) => {
    const strings = batch.strings;
    values[offset] = numberOf(strings[batch.projectId[row]]);
    values[offset + 1] = batch.at[row];
    values[offset + 2] = strings[batch.kind[row]];
    values[offset + 3] = strings[batch.method[row]];
    values[offset + 4] = strings[batch.path[row]];
    values[offset + 5] = batch.status[row];
    values[offset + 6] = batch.durationMs[row];
    values[offset + 7] = batch.bytesIn[row];
    values[offset + 8] = batch.bytesOut[row];
    values[offset + 9] = batch.keyPrefix[row] < 0 ? null : strings[batch.keyPrefix[row]];
    values[offset + 10] = batch.clientAddress[row] < 0 ? null : strings[batch.clientAddress[row]];
    values[offset + 11] = batch.requestId[row];
    values[offset + 12] = batch.app[row] < 0 ? null : strings[batch.app[row]];
  };
  const write = db.transaction(
    /**
     * @param {RequestLogBatch} batch
     * @param {number} from
     * @param {number} to
     */
    (batch, from, to) => {
      let row = from;
      for (; row + ROWS_PER_STATEMENT <= to; row += ROWS_PER_STATEMENT) {
        for (let index = 0; index < ROWS_PER_STATEMENT; index++) bind(many, index * COLUMN_COUNT, batch, row + index);
        insertMany.run(many);
      }
      for (; row < to; row++) {
        bind(one, 0, batch, row);
        insertOne.run(one);
      }
    },
  );
  return { write, numberOf };
}
