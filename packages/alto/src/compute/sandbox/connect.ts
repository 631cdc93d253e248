/**
 * @module compute/sandbox/connect
 * How the host opens a TCP connection to an instance's port (`Instance.connect`).
 *
 * Plainly for the process driver: the app's own listening socket, with the app's backlog.
 *
 * Patiently for a microVM: the host end is the listening socket of QEMU's user-mode stack
 * (`hostfwd`), which libslirp opens with a backlog of 1. When more handshakes arrive than it has
 * accepted, the host's kernel drops the SYNs and the client's kernel retries them after 1 s, 3 s,
 * 7 s ... so a burst of 50 new connections made requests wait seconds. `PatientConnector` keeps
 * at most `parallel` handshakes in flight per instance and gives each attempt `attemptMs` before
 * trying again itself, so a dropped SYN costs milliseconds.
 * A refused connection (nothing listens: the instance is gone) fails at once.
 */
import { connect, type Socket } from 'node:net';

/** One connection attempt: resolves when connected, rejects on error or after `timeoutMs` (0: the kernel's own). */
export function connectOnce(host: string, port: number, timeoutMs = 0): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const timer = timeoutMs > 0 ? setTimeout(() => fail(Object.assign(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs) : undefined;
    function fail(error: Error): void {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    }
    socket.once('error', fail);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      // Until the caller adds its own listener, an error only ends the socket.
      socket.on('error', () => socket.destroy());
      resolve(socket);
    });
  });
}

export interface PatientConnectorOptions {
  /** Handshakes in flight at once (default 2: a backlog of 1 queues a couple before the kernel drops more). */
  parallel?: number;
  /** How long one attempt waits for the handshake before trying again (default 100 ms). */
  attemptMs?: number;
  /** How long a connection may take in all before it fails (default 30 s). */
  deadlineMs?: number;
}

export class PatientConnector {
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly parallel: number;
  private readonly attemptMs: number;
  private readonly deadlineMs: number;

  constructor(
    private readonly address: () => { host: string; port: number },
    options: PatientConnectorOptions = {},
  ) {
    this.parallel = options.parallel ?? 2;
    this.attemptMs = options.attemptMs ?? 100;
    this.deadlineMs = options.deadlineMs ?? 30_000;
  }

  async connect(): Promise<Socket> {
    const deadline = Date.now() + this.deadlineMs;
    for (;;) {
      await this.turn();
      try {
        const { host, port } = this.address();
        return await connectOnce(host, port, this.attemptMs);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ETIMEDOUT' || Date.now() >= deadline) throw error;
      } finally {
        this.done();
      }
    }
  }

  private turn(): Promise<void> {
    if (this.inFlight < this.parallel) {
      this.inFlight += 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Hands the freed turn to the next waiter, or gives it back. */
  private done(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight -= 1;
  }
}
