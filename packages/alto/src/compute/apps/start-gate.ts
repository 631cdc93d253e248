/**
 * @module compute/apps/start-gate
 * Fair share of the host for instance starts (boots and snapshot restores, issue 8): at most
 * `hostLimit` run at once on the machine, and at most `perAppLimit` of them for one app. When
 * places are short, waiting apps take turns (round robin by app, first come first served within
 * an app), so one app's burst, or a deploy with many instances, cannot keep another app's first
 * instance waiting behind all of its own. Resumes of suspended instances are not gated: they take
 * a millisecond and must never wait behind a boot.
 */

/** A start that waits for its place. */
interface Waiter {
  app: string;
  admit: () => void;
}

export class StartGate {
  private running = 0;
  private readonly runningByApp = new Map<string, number>();
  /** Waiters by app, in the order their apps first asked (the round robin's ring). */
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(
    readonly hostLimit: number,
    readonly perAppLimit: number,
  ) {
    if (hostLimit < 1 || perAppLimit < 1) throw new Error('start gate limits must be at least 1');
  }

  /** Resolves with `release` once the app may start one more instance; call `release` when the start ended. */
  async admit(app: string): Promise<() => void> {
    if (this.mayStart(app) && !this.waiting.has(app)) {
      this.take(app);
    } else {
      await new Promise<void>((resolve) => {
        const queue = this.waiting.get(app) ?? [];
        queue.push({ app, admit: resolve });
        this.waiting.set(app, queue);
        this.admitWaiting();
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running -= 1;
      const left = (this.runningByApp.get(app) ?? 1) - 1;
      if (left > 0) this.runningByApp.set(app, left);
      else this.runningByApp.delete(app);
      this.admitWaiting();
    };
  }

  /** Starts running now, all apps together, and for one app. */
  inProgress(app?: string): number {
    return app === undefined ? this.running : (this.runningByApp.get(app) ?? 0);
  }

  private mayStart(app: string): boolean {
    return this.running < this.hostLimit && (this.runningByApp.get(app) ?? 0) < this.perAppLimit;
  }

  private take(app: string): void {
    this.running += 1;
    this.runningByApp.set(app, (this.runningByApp.get(app) ?? 0) + 1);
  }

  /** Gives free places to waiting apps in turn: an app admitted goes to the back of the ring. */
  private admitWaiting(): void {
    let admitted = true;
    while (admitted && this.running < this.hostLimit) {
      admitted = false;
      for (const [app, queue] of this.waiting) {
        if (!this.mayStart(app)) continue;
        const waiter = queue.shift()!;
        this.waiting.delete(app);
        // Back of the ring with what it still has waiting.
        if (queue.length > 0) this.waiting.set(app, queue);
        this.take(app);
        waiter.admit();
        admitted = true;
        break;
      }
    }
  }
}
