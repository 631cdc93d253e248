/**
 * @module store/leader/singleton
 * Runs a periodic job on one process of a cloud at a time: every `everyMs` each process asks for
 * the job's role, and only the one holding it runs the job. When the holder dies its role is
 * freed (PostgreSQL ends its session; on SQLite its lease runs out) and the next process to ask
 * takes the job over. Runs never overlap within a process; across processes they do not while
 * the store sees one holder (see `postgres.ts` for the one case it cannot see).
 */
import type { Logger } from '../../kit/logger.js';
import type { SingletonLock } from './port.js';

export interface SingletonJobOptions {
  /** The role's name, the same on every process: e.g. "usage.purge". */
  name: string;
  everyMs: number;
  run: () => Promise<void>;
  log: Logger;
}

export class SingletonJob {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly lock: SingletonLock,
    private readonly options: SingletonJobOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.runIfHolder(), this.options.everyMs);
    this.timer.unref();
  }

  /** Runs the job once if this process holds (or can take) its role; true when it ran. */
  runIfHolder(): Promise<boolean> {
    if (this.running || this.closed) return Promise.resolve(false);
    let ran = false;
    this.running = (async () => {
      let holder = false;
      try {
        holder = await this.lock.tryHold(this.options.name);
      } catch (error) {
        this.options.log.warn({ err: error, singleton: this.options.name }, 'singleton: could not ask for the role; asking again at the next interval');
      }
      if (!holder || this.closed) return;
      try {
        await this.options.run();
        ran = true;
      } catch (error) {
        this.options.log.error({ err: error, singleton: this.options.name }, 'singleton: the job failed; it runs again at the next interval');
      }
    })().finally(() => (this.running = undefined));
    return this.running.then(() => ran);
  }

  /** Stops running the job and gives the role up, so another process takes it at once. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.lock.release(this.options.name).catch(() => undefined);
  }
}
