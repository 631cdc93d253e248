/**
 * @module store/events/fanout
 * In-process fan-out: listeners registered under a key (namespace and topic) are called, in
 * registration order, with whatever is emitted under that key. The embedded event log uses it to
 * wake its consumers the moment an event is stored (no polling); `InProcessMessageBus` is the
 * embedded `MessageBus` built on it. Nothing is kept: a key without listeners drops the value.
 */
import type { BusSubscription, JsonObject, MessageBus } from './port.js';

export class Fanout<T = void> {
  private readonly listeners = new Map<string, Set<(value: T) => void>>();

  static key(namespace: string, topic: string): string {
    return `${namespace}\u0000${topic}`;
  }

  listen(key: string, listener: (value: T) => void): () => void {
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    // A wrapper of our own, so the same function registered twice is two listeners.
    const entry = (value: T) => listener(value);
    set.add(entry);
    return () => {
      set.delete(entry);
      if (set.size === 0 && this.listeners.get(key) === set) this.listeners.delete(key);
    };
  }

  emit(key: string, value: T): void {
    const set = this.listeners.get(key);
    if (!set) return;
    for (const listener of [...set]) listener(value);
  }

  /** Calls every listener under every key. */
  emitAll(value: T): void {
    for (const key of [...this.listeners.keys()]) this.emit(key, value);
  }

  /** Listeners under keys that start with `prefix` (for tests and shutdown). */
  count(prefix = ''): number {
    let total = 0;
    for (const [key, set] of this.listeners) if (key.startsWith(prefix)) total += set.size;
    return total;
  }
}

/** The embedded message bus: one process, nothing kept. */
export class InProcessMessageBus implements MessageBus {
  readonly backend = 'memory';
  private readonly fanout = new Fanout<JsonObject>();

  async publish(namespace: string, topic: string, message: JsonObject): Promise<void> {
    this.fanout.emit(Fanout.key(namespace, topic), message);
  }

  async subscribe(namespace: string, topic: string, listener: (message: JsonObject) => void): Promise<BusSubscription> {
    const stop = this.fanout.listen(Fanout.key(namespace, topic), listener);
    return { close: stop };
  }

  async close(): Promise<void> {}
}
