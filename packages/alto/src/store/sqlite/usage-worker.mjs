// @ts-check
/**
 * @module store/sqlite/usage-worker
 * The usage writer's thread: writes batches of call records (and their daily totals) to the
 * SQLite file through its own connection, so the inserts, some microseconds a row, run beside the
 * edge's event loop instead of on it. Each batch comes as columns (typed arrays, and the callers
 * they index) and is written in chunks, each chunk one transaction with
 * its daily totals, so the write lock is never held long; the answer says how many rows were
 * written, so after a failure only the rest is written again.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { sqliteCallWriter } from '../usage-calls.mjs';

/** Rows per transaction: a few milliseconds of the write lock. */
const ROWS_PER_TRANSACTION = 500;

/**
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
 * @param {CallColumns} batch
 * @param {number} from
 * @param {number} to
 */
function recordsOf(batch, from, to) {
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

const port = parentPort;
if (!port) throw new Error('usage-worker.mjs runs as a worker thread');
const db = new Database(workerData.path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const write = sqliteCallWriter(db);

port.on('message', (/** @type {{ id: number, batch: CallColumns }} */ { id, batch }) => {
  let written = 0;
  try {
    while (written < batch.length) {
      const to = Math.min(batch.length, written + ROWS_PER_TRANSACTION);
      write(recordsOf(batch, written, to));
      written = to;
    }
    port.postMessage({ id, written });
  } catch (error) {
    port.postMessage({ id, written, error: String(/** @type {Error} */ (error).message) });
  }
});
