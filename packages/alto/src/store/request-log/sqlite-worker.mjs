// @ts-check
/**
 * @module store/request-log/sqlite-worker
 * The request log's writer thread: writes batches of rows (as columns, sqlite-writer.mjs) to the
 * SQLite file through its own connection, so the inserts run beside the edge's event loop
 * instead of on it. Each batch is written in transactions of a few hundred rows, so the write
 * lock is never held long; the answer says how many rows were written.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { requestLogWriter, ROWS_PER_TRANSACTION } from './sqlite-writer.mjs';

const port = parentPort;
if (!port) throw new Error('sqlite-worker.mjs runs as a worker thread');
const db = new Database(workerData.path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const writer = requestLogWriter(db);

port.on('message', (/** @type {{ id: number, batch: import('./sqlite-writer.mjs').RequestLogBatch }} */ { id, batch }) => {
  let written = 0;
  try {
    while (written < batch.length) {
      const to = Math.min(batch.length, written + ROWS_PER_TRANSACTION);
      writer.write(batch, written, to);
      written = to;
    }
    port.postMessage({ id, written });
  } catch (error) {
    port.postMessage({ id, written, error: String(/** @type {Error} */ (error).message) });
  }
});
