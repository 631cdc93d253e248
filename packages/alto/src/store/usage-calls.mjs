// @ts-check
/**
 * @module store/usage-calls
 * Call records summed into daily totals, and their writes to SQLite: a batch of records and the
 * daily rows it adds to, in one transaction. Plain JavaScript (checked by tsc through @ts-check)
 * because it also runs in the usage writer's worker thread (sqlite/usage-worker.mjs), which loads
 * what is on disk as it is, in src/ as in dist/.
 */

/**
 * @typedef {object} CallRecord
 * @property {number} at
 * @property {string} projectId
 * @property {string} keyId
 * @property {string} service
 * @property {string} endpoint
 * @property {number} status
 * @property {number} bytesIn
 * @property {number} bytesOut
 * @property {number} priceMicros
 */

/**
 * @typedef {object} DailyCallTotal
 * @property {string} projectId
 * @property {string} day
 * @property {string} keyId
 * @property {string} service
 * @property {string} endpoint
 * @property {number} calls
 * @property {number} errors
 * @property {number} bytesIn
 * @property {number} bytesOut
 * @property {number} priceMicros
 */

/**
 * A batch of call records as columns: numbers in typed arrays, who called as an index into `callers`.
 * @typedef {object} CallColumns
 * @property {number} length
 * @property {Float64Array} at
 * @property {Uint16Array} status
 * @property {Float64Array} bytesIn
 * @property {Float64Array} bytesOut
 * @property {Float64Array} priceMicros
 * @property {Uint32Array} caller
 * @property {{ projectId: string, keyId: string, service: string, endpoint: string }[]} callers
 */

/**
 * Rows `from` to `to` (excluded) of a batch given as columns, as records.
 * @param {CallColumns} batch
 * @param {number} [from]
 * @param {number} [to]
 * @returns {CallRecord[]}
 */
export function recordsOfColumns(batch, from = 0, to = batch.length) {
  /** @type {CallRecord[]} */
  const records = [];
  for (let i = from; i < to; i++) {
    const caller = batch.callers[batch.caller[i]];
    records.push({
      at: batch.at[i],
      projectId: caller.projectId,
      keyId: caller.keyId,
      service: caller.service,
      endpoint: caller.endpoint,
      status: batch.status[i],
      bytesIn: batch.bytesIn[i],
      bytesOut: batch.bytesOut[i],
      priceMicros: batch.priceMicros[i],
    });
  }
  return records;
}

/**
 * `YYYY-MM-DD` of a time, in UTC.
 * @param {number} at
 * @returns {string}
 */
export function dayOf(at) {
  return new Date(at).toISOString().slice(0, 10);
}

/**
 * Sorted by key, so every process that adds a batch to the daily rows of a shared database
 * touches (and locks) them in the same order.
 * @template T
 * @param {Map<string, T>} totals
 * @returns {T[]}
 */
export function sortedByKey(totals) {
  return [...totals.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, total]) => total);
}

/**
 * Calls of one second, one caller, one endpoint and one status, as the records table keeps them.
 * @typedef {object} CallRow
 * @property {number} at The second's start, milliseconds since the epoch.
 * @property {string} projectId
 * @property {string} keyId
 * @property {string} service
 * @property {string} endpoint
 * @property {number} status
 * @property {number} calls
 * @property {number} bytesIn
 * @property {number} bytesOut
 * @property {number} priceMicros
 */

/**
 * A batch of call records summed per second, caller, endpoint and status: the rows of the
 * records table. Under load a caller makes thousands of calls a second, and a row each would
 * cost the writer more than the calls cost the edge; the daily totals and every sum stay exact.
 * @param {CallRecord[]} records
 * @returns {CallRow[]}
 */
export function callRows(records) {
  /** @type {Map<string, CallRow>} */
  const rows = new Map();
  for (const r of records) {
    const at = r.at - (r.at % 1000);
    const key = `${at}\n${r.projectId}\n${r.keyId}\n${r.service}\n${r.endpoint}\n${r.status}`;
    let row = rows.get(key);
    if (!row) {
      row = { at, projectId: r.projectId, keyId: r.keyId, service: r.service, endpoint: r.endpoint, status: r.status, calls: 0, bytesIn: 0, bytesOut: 0, priceMicros: 0 };
      rows.set(key, row);
    }
    row.calls += 1;
    row.bytesIn += r.bytesIn;
    row.bytesOut += r.bytesOut;
    row.priceMicros += r.priceMicros;
  }
  return [...rows.values()];
}

/**
 * `callRows` of rows `from` to `to` (excluded) of a batch given as columns, with no record built
 * on the way: the writer thread's pass over each call is a few number operations.
 * @param {CallColumns} batch
 * @param {number} [from]
 * @param {number} [to]
 * @returns {CallRow[]}
 */
export function callRowsOfColumns(batch, from = 0, to = batch.length) {
  /** @type {Map<number, CallRow>} */
  const rows = new Map();
  const callers = batch.callers.length;
  const firstSecond = from < to ? Math.floor(batch.at[from] / 1000) : 0;
  for (let i = from; i < to; i++) {
    const at = batch.at[i] - (batch.at[i] % 1000);
    // Unique for each second (after or before the first: the sign tells), caller and status (under 1000).
    const key = ((at / 1000 - firstSecond) * 1000 + batch.status[i]) * callers + batch.caller[i];
    let row = rows.get(key);
    if (!row) {
      const caller = batch.callers[batch.caller[i]];
      row = { at, projectId: caller.projectId, keyId: caller.keyId, service: caller.service, endpoint: caller.endpoint, status: batch.status[i], calls: 0, bytesIn: 0, bytesOut: 0, priceMicros: 0 };
      rows.set(key, row);
    }
    row.calls += 1;
    row.bytesIn += batch.bytesIn[i];
    row.bytesOut += batch.bytesOut[i];
    row.priceMicros += batch.priceMicros[i];
  }
  return [...rows.values()];
}

/**
 * Rows of call records summed into the daily rows they add to.
 * @param {CallRow[]} rows
 * @returns {DailyCallTotal[]}
 */
export function dailyCallTotals(rows) {
  /** @type {Map<string, DailyCallTotal>} */
  const days = new Map();
  // Rows span a day or two: name each day once, not once per row.
  /** @type {Map<number, string>} */
  const dayNames = new Map();
  for (const r of rows) {
    const dayNumber = Math.floor(r.at / 86_400_000);
    let day = dayNames.get(dayNumber);
    if (day === undefined) dayNames.set(dayNumber, (day = dayOf(r.at)));
    const key = `${r.projectId}\n${day}\n${r.keyId}\n${r.service}\n${r.endpoint}`;
    let total = days.get(key);
    if (!total) {
      total = { projectId: r.projectId, day, keyId: r.keyId, service: r.service, endpoint: r.endpoint, calls: 0, errors: 0, bytesIn: 0, bytesOut: 0, priceMicros: 0 };
      days.set(key, total);
    }
    total.calls += r.calls;
    if (r.status >= 400) total.errors += r.calls;
    total.bytesIn += r.bytesIn;
    total.bytesOut += r.bytesOut;
    total.priceMicros += r.priceMicros;
  }
  return sortedByKey(days);
}

/** Rows written by one INSERT statement: binding once per row costs more than SQLite's own work. */
const ROWS_PER_INSERT = 50;

/**
 * The write of rows of call records (`callRows`) to an SQLite database (better-sqlite3): the
 * rows and the daily totals they add to, in one transaction.
 * @param {import('better-sqlite3').Database} db
 * @returns {(rows: CallRow[]) => void}
 */
export function sqliteCallWriter(db) {
  /** @param {number} rows */
  const insertRows = (rows) =>
    db.prepare(`INSERT INTO usage_records
      (at, project_id, key_id, service, endpoint, status, calls, bytes_in, bytes_out, price_micros)
      VALUES ${Array(rows).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`);
  const insertMany = insertRows(ROWS_PER_INSERT);
  const insertOne = insertRows(1);
  const addCallDay = db.prepare(`INSERT INTO usage_daily
    (project_id, day, key_id, service, endpoint, calls, errors, bytes_in, bytes_out, price_micros)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (project_id, day, key_id, service, endpoint) DO UPDATE SET
      calls = calls + excluded.calls, errors = errors + excluded.errors,
      bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out,
      price_micros = price_micros + excluded.price_micros`);
  return db.transaction((/** @type {CallRow[]} */ rows) => {
    /** @param {number} from @param {number} count */
    const valuesOf = (from, count) => {
      /** @type {unknown[]} */
      const values = [];
      for (let i = from; i < from + count; i++) {
        const r = rows[i];
        values.push(r.at, r.projectId, r.keyId, r.service, r.endpoint, r.status, r.calls, r.bytesIn, r.bytesOut, r.priceMicros);
      }
      return values;
    };
    let next = 0;
    for (; next + ROWS_PER_INSERT <= rows.length; next += ROWS_PER_INSERT) insertMany.run(valuesOf(next, ROWS_PER_INSERT));
    for (; next < rows.length; next++) insertOne.run(valuesOf(next, 1));
    for (const t of dailyCallTotals(rows)) {
      addCallDay.run(t.projectId, t.day, t.keyId, t.service, t.endpoint, t.calls, t.errors, t.bytesIn, t.bytesOut, t.priceMicros);
    }
  });
}
