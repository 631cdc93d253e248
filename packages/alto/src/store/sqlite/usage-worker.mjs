// @ts-check
/**
 * @module store/sqlite/usage-worker
 * The usage writer's thread: writes batches of call records (and their daily totals) to the
 * SQLite file through its own connection, so the inserts run beside the edge's event loop
 * instead of on it. Calls are summed per second, caller and status first (usage-calls.mjs). Each batch comes as columns (typed arrays, and the callers
 * they index) and is written in chunks, each chunk one transaction with
 * its daily totals, so the write lock is never held long; the answer says how many rows were
 * written, so after a failure only the rest is written again.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { callRowsOfColumns, sqliteCallWriter } from '../usage-calls.mjs';

/** Rows per transaction: a few milliseconds of the write lock. */
const ROWS_PER_TRANSACTION = 500;

const port = parentPort;
if (!port) throw new Error('usage-worker.mjs runs as a worker thread');
const db = new Database(workerData.path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const write = sqliteCallWriter(db);

port.on('message', (/** @type {{ id: number, batch: import('../usage-calls.mjs').CallColumns }} */ { id, batch }) => {
  let written = 0;
  try {
    while (written < batch.length) {
      const to = Math.min(batch.length, written + ROWS_PER_TRANSACTION);
      write(callRowsOfColumns(batch, written, to));
      written = to;
    }
    port.postMessage({ id, written });
  } catch (error) {
    port.postMessage({ id, written, error: String(/** @type {Error} */ (error).message) });
  }
});
