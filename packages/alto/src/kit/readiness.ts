/**
 * @module kit/readiness
 * Tracks the named parts a process needs before it can serve. `/readyz` answers 200 only when
 * every registered part has said it is ready.
 */
export class Readiness {
  private readonly parts = new Map<string, boolean>();

  /** Declares a part that is not ready yet. */
  expect(part: string): void {
    if (!this.parts.has(part)) this.parts.set(part, false);
  }

  ready(part: string): void {
    this.parts.set(part, true);
  }

  notReady(part: string): void {
    this.parts.set(part, false);
  }

  get isReady(): boolean {
    return this.parts.size > 0 && [...this.parts.values()].every(Boolean);
  }

  snapshot(): Record<string, boolean> {
    return Object.fromEntries(this.parts);
  }
}
