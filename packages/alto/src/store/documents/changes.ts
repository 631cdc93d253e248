/**
 * @module store/documents/changes
 * The in-process fan-out of committed changes to the watchers of a table, and the checks both
 * adapters share (record size, limits' error sentences).
 */
import { errors } from '../../kit/errors.js';
import type { Change, ChangeListener, Watch } from './port.js';

interface Subscriber {
  listener: ChangeListener;
  onEnd?: () => void;
}

export class ChangeBus {
  private readonly subscribers = new Map<string, Set<Subscriber>>();

  private static key(namespace: string, table: string): string {
    return `${namespace}\u0000${table}`;
  }

  subscribe(namespace: string, table: string, listener: ChangeListener, onEnd?: () => void): Watch {
    const key = ChangeBus.key(namespace, table);
    let set = this.subscribers.get(key);
    if (!set) this.subscribers.set(key, (set = new Set()));
    const subscriber = { listener, onEnd };
    set.add(subscriber);
    return {
      stop: () => {
        set.delete(subscriber);
        if (set.size === 0 && this.subscribers.get(key) === set) this.subscribers.delete(key);
      },
    };
  }

  /** Whether anyone watches this table (so adapters can skip building change messages). */
  isWatched(namespace: string, table: string): boolean {
    return this.subscribers.has(ChangeBus.key(namespace, table));
  }

  get isEmpty(): boolean {
    return this.subscribers.size === 0;
  }

  publish(change: Change): void {
    const set = this.subscribers.get(ChangeBus.key(change.namespace, change.table));
    if (!set) return;
    for (const subscriber of [...set]) subscriber.listener(change);
  }

  /** Ends every watch (the store is closing). */
  close(): void {
    const all = [...this.subscribers.values()].flatMap((set) => [...set]);
    this.subscribers.clear();
    for (const subscriber of all) subscriber.onEnd?.();
  }
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(bytes % 1024 === 0 ? 0 : 1)} KiB`;
  return `${bytes} bytes`;
}

/** The JSON text of a record, or a 413 when it is larger than the limit. */
export function encodeRecord(data: unknown, maxBytes: number, id: string): string {
  const json = JSON.stringify(data);
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes) {
    throw errors.payloadTooLarge(
      `record: "${id}" is ${formatBytes(bytes)} as JSON, more than the ${formatBytes(maxBytes)} a record may hold; split it or store large data in files`,
    );
  }
  return json;
}

export const limitErrors = {
  rows: (max: number) =>
    errors.forbidden(`the project already holds ${max} records, its limit; delete records or drop tables to make room`),
  tables: (max: number) => errors.forbidden(`this project environment already has ${max} tables, its limit; drop a table first`),
  indexes: (table: string, max: number) =>
    errors.forbidden(`table "${table}" already has ${max} indexes, its limit; drop one with DropIndex first`),
  tableMissing: (table: string) => errors.notFound(`table "${table}" does not exist; ListTables shows the tables`),
  recordMissing: (table: string, id: string) => errors.notFound(`record "${id}" does not exist in table "${table}"`),
  revision: (table: string, id: string, expected: number, actual: number) =>
    errors.conflict(
      `record "${id}" in table "${table}" is at revision ${actual}, not ${expected}: it changed since you read it; read it again and retry`,
    ),
  duplicate: (table: string, id: string) =>
    errors.conflict(`record "${id}" already exists in table "${table}"; use Update to change it, or another id`),
  tableExists: (table: string) => errors.conflict(`table "${table}" already exists; drop it first or choose another name`),
  indexMissing: (table: string, field: string) => errors.notFound(`table "${table}" has no index on "${field}"; ListIndexes shows them`),
};
