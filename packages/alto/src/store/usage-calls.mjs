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
 * A batch of call records summed into the daily rows it adds to.
 * @param {CallRecord[]} records
 * @returns {DailyCallTotal[]}
 */
export function dailyCallTotals(records) {
  /** @type {Map<string, DailyCallTotal>} */
  const days = new Map();
  // A batch spans a day or two: name each day once, not once per record.
  /** @type {Map<number, string>} */
  const dayNames = new Map();
  for (const r of records) {
    const dayNumber = Math.floor(r.at / 86_400_000);
    let day = dayNames.get(dayNumber);
    if (day === undefined) dayNames.set(dayNumber, (day = dayOf(r.at)));
    const key = `${r.projectId}\n${day}\n${r.keyId}\n${r.service}\n${r.endpoint}`;
    let total = days.get(key);
    if (!total) {
      total = { projectId: r.projectId, day, keyId: r.keyId, service: r.service, endpoint: r.endpoint, calls: 0, errors: 0, bytesIn: 0, bytesOut: 0, priceMicros: 0 };
      days.set(key, total);
    }
    total.calls += 1;
    if (r.status >= 400) total.errors += 1;
    total.bytesIn += r.bytesIn;
    total.bytesOut += r.bytesOut;
    total.priceMicros += r.priceMicros;
  }
  return sortedByKey(days);
}

/** Call records written by one INSERT statement: binding once per row costs more than SQLite's own work. */
const ROWS_PER_INSERT = 50;

/**
 * The write of a batch of call records to an SQLite database (better-sqlite3): the records and
 * their daily totals, in one transaction.
 * @param {import('better-sqlite3').Database} db
 * @returns {(records: CallRecord[]) => void}
 */
export function sqliteCallWriter(db) {
  /** @param {number} rows */
  const insertCalls = (rows) =>
    db.prepare(`INSERT INTO usage_records
      (at, project_id, key_id, service, endpoint, status, bytes_in, bytes_out, price_micros)
      VALUES ${Array(rows).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`);
  const insertMany = insertCalls(ROWS_PER_INSERT);
  const insertOne = insertCalls(1);
  const addCallDay = db.prepare(`INSERT INTO usage_daily
    (project_id, day, key_id, service, endpoint, calls, errors, bytes_in, bytes_out, price_micros)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (project_id, day, key_id, service, endpoint) DO UPDATE SET
      calls = calls + excluded.calls, errors = errors + excluded.errors,
      bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out,
      price_micros = price_micros + excluded.price_micros`);
  return db.transaction((/** @type {CallRecord[]} */ records) => {
    /** @param {number} from @param {number} count */
    const valuesOf = (from, count) => {
      /** @type {unknown[]} */
      const values = [];
      for (let i = from; i < from + count; i++) {
        const r = records[i];
        values.push(r.at, r.projectId, r.keyId, r.service, r.endpoint, r.status, r.bytesIn, r.bytesOut, r.priceMicros);
      }
      return values;
    };
    let next = 0;
    for (; next + ROWS_PER_INSERT <= records.length; next += ROWS_PER_INSERT) insertMany.run(valuesOf(next, ROWS_PER_INSERT));
    for (; next < records.length; next++) insertOne.run(valuesOf(next, 1));
    for (const t of dailyCallTotals(records)) {
      addCallDay.run(t.projectId, t.day, t.keyId, t.service, t.endpoint, t.calls, t.errors, t.bytesIn, t.bytesOut, t.priceMicros);
    }
  });
}
