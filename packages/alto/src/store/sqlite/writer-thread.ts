/**
 * @module store/sqlite/writer-thread
 * A worker thread that writes batches to a SQLite file with its own connection, one batch after
 * another, so the inserts of a busy table (usage records, the request log) leave the event loop.
 * `write` resolves once the thread has committed the batch; a batch it could not write rejects
 * with the error `failure` makes of the thread's message and the rows it wrote. An idle thread
 * does not keep the process alive; a write in flight does. `close` waits for the writes in flight.
 */
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/** The error of a batch the thread answered it could not write: its message, and how many of the batch's rows it wrote. */
export type WriteFailure = (message: string, written: number) => Error;

export class SqliteWriterThread<Batch> {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private nextId = 1;
  /** Settles once every write handed over so far has. */
  private settled: Promise<void> = Promise.resolve();
  alive = true;

  /**
   * `script`: the worker's plain JavaScript file (beside its store, in src/ and dist/ alike);
   * `what` names it in errors; `ended` makes the error of writes waiting when the thread is gone.
   */
  constructor(
    script: URL,
    path: string,
    what: string,
    private readonly failure: WriteFailure,
    private readonly endedError: (error: Error) => Error = (error) => error,
  ) {
    if (!existsSync(script)) throw new Error(`the ${what} ${script.pathname} is missing; rebuild Alto`);
    // Plain JavaScript: none of the process's own flags (a loader, --input-type) is for it.
    this.worker = new Worker(script, { workerData: { path }, execArgv: [] });
    this.worker.on('message', (answer: { id: number; written: number; error?: string }) => {
      const waiting = this.pending.get(answer.id);
      this.pending.delete(answer.id);
      if (this.pending.size === 0) this.worker.unref();
      if (answer.error === undefined) waiting?.resolve();
      else waiting?.reject(this.failure(answer.error, answer.written));
    });
    this.worker.on('error', (error) => this.ended(error));
    this.worker.on('exit', (code) => this.ended(new Error(`the ${what} thread ended (${code})`)));
    // A write in flight keeps the process; an idle writer does not. After the listeners: adding
    // a 'message' listener refs the worker's port again.
    this.worker.unref();
  }

  write(batch: Batch): Promise<void> {
    const id = this.nextId++;
    this.worker.ref();
    const written = new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, batch });
    });
    this.settled = this.settled.then(() => written.then(noop, noop));
    return written;
  }

  /** Waits for the writes in flight, then ends the thread. */
  async close(): Promise<void> {
    await this.settled;
    if (!this.alive) return;
    this.alive = false;
    await this.worker.terminate();
  }

  /** The thread is gone: writes waiting for it fail (none of their rows is known written). */
  private ended(error: Error): void {
    this.alive = false;
    for (const { reject } of this.pending.values()) reject(this.endedError(error));
    this.pending.clear();
  }
}

function noop(): void {}
