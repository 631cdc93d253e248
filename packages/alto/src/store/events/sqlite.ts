/**
 * @module store/events/sqlite
 * The embedded event log: one append-only table in the shared SQLite file (the global sequence
 * orders every topic), a row per topic (count, last time), group cursors, and the group
 * deliveries awaiting acknowledgement with their deadlines. Consumers read from the log at
 * their own pace, so a slow one lags behind without holding anything in memory or slowing a
 * publisher; an in-process fan-out wakes the waiting ones the moment an event is stored.
 * Group members claim events in IMMEDIATE transactions, so two never get the same one, and a
 * claim is a pending row until acknowledged: a crash or a restart loses none. Other processes
 * on the same data folder (whose publishes the fan-out cannot see) are noticed through SQLite's
 * `data_version`, looked at a few times a second while anyone waits.
 */
import { randomUUID } from 'node:crypto';
import { errors } from '../../kit/errors.js';
import { migrate, type SqliteDatabase } from '../sqlite/database.js';
import { Fanout } from './fanout.js';
import {
  ACK_NEEDS_GROUP,
  DEFAULT_RETENTION,
  type ConsumeOptions,
  type Delivery,
  type EventConsumer,
  type EventStore,
  type JsonObject,
  type RetentionPolicy,
  type StoredEvent,
} from './port.js';

const MIGRATIONS = [
  `CREATE TABLE event_log (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     namespace TEXT NOT NULL,
     topic TEXT NOT NULL,
     id TEXT NOT NULL,
     message TEXT NOT NULL,
     created_at INTEGER NOT NULL);
   CREATE INDEX event_log_topic ON event_log(namespace, topic, seq);
   CREATE INDEX event_log_time ON event_log(namespace, topic, created_at);
   CREATE TABLE event_topics (
     namespace TEXT NOT NULL,
     topic TEXT NOT NULL,
     events INTEGER NOT NULL,
     last_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, topic)) WITHOUT ROWID;
   CREATE TABLE event_retention (
     namespace TEXT PRIMARY KEY,
     max_age_ms INTEGER NOT NULL,
     max_events INTEGER NOT NULL) WITHOUT ROWID;
   CREATE TABLE event_groups (
     namespace TEXT NOT NULL,
     topic TEXT NOT NULL,
     name TEXT NOT NULL,
     cursor INTEGER NOT NULL,
     active_at INTEGER NOT NULL,
     PRIMARY KEY (namespace, topic, name)) WITHOUT ROWID;
   CREATE TABLE event_pending (
     namespace TEXT NOT NULL,
     topic TEXT NOT NULL,
     group_name TEXT NOT NULL,
     seq INTEGER NOT NULL,
     event_id TEXT NOT NULL,
     holder TEXT NOT NULL,
     deadline INTEGER NOT NULL,
     deliveries INTEGER NOT NULL,
     PRIMARY KEY (namespace, topic, group_name, seq)) WITHOUT ROWID;
   CREATE INDEX event_pending_deadline ON event_pending(namespace, topic, group_name, deadline);
   CREATE INDEX event_pending_event ON event_pending(namespace, topic, group_name, event_id);
   CREATE INDEX event_pending_holder ON event_pending(holder, deadline);`,
];

/** Events a consumer without a group reads per query. */
const SOLO_BATCH = 128;
/** Events a group member claims at once: small, so a burst is shared among the members. */
const GROUP_BATCH = 16;
/** Rows removed per retention statement, so writers never wait long. */
const PURGE_BATCH = 1000;
/** How often a store with waiting consumers looks for commits by other processes. */
const OTHER_WRITERS_INTERVAL_MS = 250;

interface LogRow {
  seq: number;
  id: string;
  message: string;
  created_at: number;
}

interface ClaimedRow extends LogRow {
  deliveries: number;
}

type Statements = ReturnType<typeof prepare>;

function prepare(db: SqliteDatabase) {
  return {
    topic: db.prepare('SELECT events, last_at FROM event_topics WHERE namespace = ? AND topic = ?'),
    insert: db.prepare('INSERT INTO event_log (namespace, topic, id, message, created_at) VALUES (?, ?, ?, ?, ?)'),
    countTopic: db.prepare(`INSERT INTO event_topics (namespace, topic, events, last_at) VALUES (?, ?, 1, ?)
      ON CONFLICT (namespace, topic) DO UPDATE SET events = events + 1, last_at = excluded.last_at`),
    page: db.prepare(`SELECT seq, id, message, created_at FROM event_log
      WHERE namespace = ? AND topic = ? ORDER BY seq LIMIT ? OFFSET ?`),
    after: db.prepare(`SELECT seq, id, message, created_at FROM event_log
      WHERE namespace = ? AND topic = ? AND seq > ? ORDER BY seq LIMIT ?`),
    lastSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) AS seq FROM event_log'),
    firstSince: db.prepare(`SELECT seq FROM event_log WHERE namespace = ? AND topic = ? AND created_at >= ?
      ORDER BY created_at, seq LIMIT 1`),
    group: db.prepare('SELECT cursor FROM event_groups WHERE namespace = ? AND topic = ? AND name = ?'),
    createGroup: db.prepare(`INSERT INTO event_groups (namespace, topic, name, cursor, active_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (namespace, topic, name) DO UPDATE SET active_at = excluded.active_at`),
    moveCursor: db.prepare('UPDATE event_groups SET cursor = ?, active_at = ? WHERE namespace = ? AND topic = ? AND name = ?'),
    due: db.prepare(`SELECT p.seq, p.deliveries, l.id, l.message, l.created_at
      FROM event_pending p JOIN event_log l ON l.seq = p.seq
      WHERE p.namespace = ? AND p.topic = ? AND p.group_name = ? AND p.deadline <= ? ORDER BY p.seq LIMIT ?`),
    reclaim: db.prepare(`UPDATE event_pending SET holder = ?, deadline = ?, deliveries = deliveries + 1
      WHERE namespace = ? AND topic = ? AND group_name = ? AND seq = ?`),
    addPending: db.prepare(`INSERT INTO event_pending (namespace, topic, group_name, seq, event_id, holder, deadline, deliveries)
      VALUES (?, ?, ?, ?, ?, ?, ?, 1)`),
    nextDeadline: db.prepare(`SELECT MIN(deadline) AS deadline FROM event_pending
      WHERE namespace = ? AND topic = ? AND group_name = ? AND deadline > ?`),
    inFlight: db.prepare('SELECT COUNT(*) AS n FROM event_pending WHERE holder = ? AND deadline > ?'),
    settleOwn: db.prepare(`DELETE FROM event_pending
      WHERE namespace = ? AND topic = ? AND group_name = ? AND seq = ? AND holder = ?`),
    release: db.prepare(`UPDATE event_pending SET holder = '', deadline = ?, deliveries = deliveries - ?
      WHERE namespace = ? AND topic = ? AND group_name = ? AND seq = ? AND holder = ?`),
    ack: db.prepare('DELETE FROM event_pending WHERE namespace = ? AND topic = ? AND group_name = ? AND event_id = ?'),
    retention: db.prepare('SELECT max_age_ms, max_events FROM event_retention WHERE namespace = ?'),
    allRetention: db.prepare('SELECT namespace, max_age_ms, max_events FROM event_retention'),
    setRetention: db.prepare(`INSERT INTO event_retention (namespace, max_age_ms, max_events) VALUES (?, ?, ?)
      ON CONFLICT (namespace) DO UPDATE SET max_age_ms = excluded.max_age_ms, max_events = excluded.max_events`),
    allTopics: db.prepare('SELECT namespace, topic, events, last_at FROM event_topics'),
    namespaceTopics: db.prepare('SELECT namespace, topic, events, last_at FROM event_topics WHERE namespace = ?'),
    purgeOlder: db.prepare(`DELETE FROM event_log WHERE seq IN (SELECT seq FROM event_log
      WHERE namespace = ? AND topic = ? AND created_at < ? ORDER BY created_at LIMIT ${PURGE_BATCH})`),
    nthNewest: db.prepare(`SELECT seq FROM event_log WHERE namespace = ? AND topic = ? ORDER BY seq DESC LIMIT 1 OFFSET ?`),
    purgeUpTo: db.prepare(`DELETE FROM event_log WHERE seq IN (SELECT seq FROM event_log
      WHERE namespace = ? AND topic = ? AND seq <= ? ORDER BY seq LIMIT ${PURGE_BATCH})`),
    uncount: db.prepare('UPDATE event_topics SET events = MAX(events - ?, 0) WHERE namespace = ? AND topic = ?'),
    dropOrphans: db.prepare(`DELETE FROM event_pending WHERE namespace = ? AND topic = ? AND seq <
      (SELECT COALESCE(MIN(seq), 9007199254740991) FROM event_log WHERE namespace = ? AND topic = ?)`),
    dropIdleTopic: db.prepare('DELETE FROM event_topics WHERE namespace = ? AND topic = ? AND events = 0 AND last_at < ?'),
    idleGroups: db.prepare('SELECT topic, name FROM event_groups WHERE namespace = ? AND active_at < ?'),
    dropGroup: db.prepare('DELETE FROM event_groups WHERE namespace = ? AND topic = ? AND name = ?'),
    dropGroupPending: db.prepare('DELETE FROM event_pending WHERE namespace = ? AND topic = ? AND group_name = ?'),
    namespacesWithGroups: db.prepare('SELECT DISTINCT namespace FROM event_groups'),
    deleteProject: ['event_log', 'event_topics', 'event_retention', 'event_groups', 'event_pending'].map((table) =>
      db.prepare(`DELETE FROM ${table} WHERE namespace >= ? AND substr(namespace, 1, length(?)) = ?`),
    ),
  };
}

function toEvent(topic: string, row: LogRow): StoredEvent {
  return { id: row.id, topic, message: JSON.parse(row.message) as JsonObject, timestamp: row.created_at };
}

export class SqliteEventStore implements EventStore {
  readonly backend = 'sqlite';
  private readonly statements: Statements;
  private readonly fanout = new Fanout<void>();
  private readonly consumers = new Set<SqliteConsumer>();
  private readonly append: (namespace: string, topic: string, message: string) => { id: string };
  private readonly claimInTransaction: (consumer: SqliteConsumer, count: number) => ClaimedRow[];
  private otherWriters: { timer: NodeJS.Timeout; version: number } | undefined;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => number = Date.now,
  ) {
    migrate(db, 'events', MIGRATIONS);
    const statements = (this.statements = prepare(db));
    const append = db.transaction((namespace: string, topic: string, message: string) => {
      const last = statements.topic.get(namespace, topic) as { last_at: number } | undefined;
      // Never earlier than the topic's last event, so time order is log order and an offset
      // in time is a position in the log, whatever the wall clock does.
      const at = Math.max(this.now(), last?.last_at ?? 0);
      const id = randomUUID();
      statements.insert.run(namespace, topic, id, message, at);
      statements.countTopic.run(namespace, topic, at);
      return { id };
    });
    this.append = (namespace, topic, message) => append.immediate(namespace, topic, message);
    const claim = db.transaction((consumer: SqliteConsumer, count: number): ClaimedRow[] => {
      const { namespace, topic, group, holder, ackWaitMs } = consumer;
      const now = this.now();
      const deadline = now + ackWaitMs;
      const claimed = statements.due.all(namespace, topic, group, now, count) as ClaimedRow[];
      for (const row of claimed) {
        statements.reclaim.run(holder, deadline, namespace, topic, group, row.seq);
        row.deliveries += 1;
      }
      if (claimed.length < count) {
        let cursor = (statements.group.get(namespace, topic, group) as { cursor: number } | undefined)?.cursor;
        if (cursor === undefined) {
          // Removed under a live member (by another process, or with its project): go on from here.
          cursor = (statements.lastSeq.get() as { seq: number }).seq;
          statements.createGroup.run(namespace, topic, group, cursor, now);
        }
        const fresh = statements.after.all(namespace, topic, cursor, count - claimed.length) as LogRow[];
        for (const row of fresh) {
          statements.addPending.run(namespace, topic, group, row.seq, row.id, holder, deadline);
          claimed.push({ ...row, deliveries: 1 });
        }
        if (fresh.length > 0) statements.moveCursor.run(fresh[fresh.length - 1].seq, now, namespace, topic, group);
      }
      return claimed;
    });
    this.claimInTransaction = (consumer, count) => claim.immediate(consumer, count);
  }

  async publish(namespace: string, topic: string, message: JsonObject): Promise<{ id: string }> {
    const stored = this.append(namespace, topic, JSON.stringify(message));
    this.fanout.emit(Fanout.key(namespace, topic));
    return stored;
  }

  async read(namespace: string, topic: string, page: { offset: number; limit: number }): Promise<StoredEvent[]> {
    const rows = this.statements.page.all(namespace, topic, page.limit, page.offset) as LogRow[];
    return rows.map((row) => toEvent(topic, row));
  }

  async consume(namespace: string, topic: string, options: ConsumeOptions): Promise<EventConsumer> {
    if (!options.autoAck && !options.group) throw errors.badRequest(ACK_NEEDS_GROUP);
    const now = this.now();
    let start = (this.statements.lastSeq.get() as { seq: number }).seq;
    if (options.since !== undefined) {
      const first = this.statements.firstSince.get(namespace, topic, options.since) as { seq: number } | undefined;
      if (first) start = first.seq - 1;
    }
    if (options.group) this.statements.createGroup.run(namespace, topic, options.group, start, now);
    const consumer = new SqliteConsumer(this, namespace, topic, options, start);
    this.consumers.add(consumer);
    this.watchOtherWriters();
    return consumer;
  }

  async ack(namespace: string, topic: string, group: string, id: string): Promise<boolean> {
    const acknowledged = this.statements.ack.run(namespace, topic, group, id).changes > 0;
    // A member waiting for room under its in-flight limit may go on.
    if (acknowledged) this.fanout.emit(Fanout.key(namespace, topic));
    return acknowledged;
  }

  async listTopics(namespace: string): Promise<string[]> {
    return this.db.prepare('SELECT DISTINCT topic FROM event_log WHERE namespace = ? ORDER BY topic').pluck().all(namespace) as string[];
  }

  async retention(namespace: string): Promise<RetentionPolicy> {
    const row = this.statements.retention.get(namespace) as { max_age_ms: number; max_events: number } | undefined;
    return row ? { maxAgeMs: row.max_age_ms, maxEventsPerTopic: row.max_events } : { ...DEFAULT_RETENTION };
  }

  async setRetention(namespace: string, policy: RetentionPolicy): Promise<void> {
    this.statements.setRetention.run(namespace, policy.maxAgeMs, policy.maxEventsPerTopic);
  }

  async enforceRetention(only?: string): Promise<number> {
    const s = this.statements;
    const now = this.now();
    const policies = new Map<string, RetentionPolicy>();
    for (const row of s.allRetention.all() as { namespace: string; max_age_ms: number; max_events: number }[]) {
      policies.set(row.namespace, { maxAgeMs: row.max_age_ms, maxEventsPerTopic: row.max_events });
    }
    const policyOf = (namespace: string) => policies.get(namespace) ?? DEFAULT_RETENTION;
    let total = 0;
    const topics = (only === undefined ? s.allTopics.all() : s.namespaceTopics.all(only)) as {
      namespace: string;
      topic: string;
      events: number;
      last_at: number;
    }[];
    for (const { namespace, topic, events } of topics) {
      const policy = policyOf(namespace);
      let removed = 0;
      for (;;) {
        const changes = s.purgeOlder.run(namespace, topic, now - policy.maxAgeMs).changes;
        removed += changes;
        if (changes < PURGE_BATCH) break;
      }
      if (events - removed > policy.maxEventsPerTopic) {
        const cutoff = s.nthNewest.get(namespace, topic, policy.maxEventsPerTopic) as { seq: number } | undefined;
        if (cutoff) {
          for (;;) {
            const changes = s.purgeUpTo.run(namespace, topic, cutoff.seq).changes;
            removed += changes;
            if (changes < PURGE_BATCH) break;
          }
        }
      }
      if (removed > 0) {
        s.uncount.run(removed, namespace, topic);
        s.dropOrphans.run(namespace, topic, namespace, topic);
        total += removed;
      }
      s.dropIdleTopic.run(namespace, topic, now - policy.maxAgeMs);
    }
    // A group unused for longer than events are kept is forgotten; it starts afresh when used.
    for (const { namespace } of s.namespacesWithGroups.all() as { namespace: string }[]) {
      if (only !== undefined && namespace !== only) continue;
      for (const group of s.idleGroups.all(namespace, now - policyOf(namespace).maxAgeMs) as { topic: string; name: string }[]) {
        if (this.hasMember(namespace, group.topic, group.name)) continue;
        s.dropGroup.run(namespace, group.topic, group.name);
        s.dropGroupPending.run(namespace, group.topic, group.name);
      }
    }
    return total;
  }

  async deleteProject(projectId: string): Promise<void> {
    const prefix = `${projectId}/`;
    for (const consumer of [...this.consumers]) if (consumer.namespace.startsWith(prefix)) await consumer.close();
    this.db.transaction(() => {
      for (const statement of this.statements.deleteProject) statement.run(prefix, prefix, prefix);
    })();
  }

  async close(): Promise<void> {
    if (this.otherWriters) clearInterval(this.otherWriters.timer);
    this.otherWriters = undefined;
    for (const consumer of [...this.consumers]) await consumer.close();
    // The database handle is shared with other adapters; `Stores.close()` closes it.
  }

  private hasMember(namespace: string, topic: string, group: string): boolean {
    for (const consumer of this.consumers) {
      if (consumer.namespace === namespace && consumer.topic === topic && consumer.group === group) return true;
    }
    return false;
  }

  /** @internal The consumer's access to the store. */
  take(consumer: SqliteConsumer): { rows: ClaimedRow[]; wakeAt?: number } {
    const s = this.statements;
    const { namespace, topic } = consumer;
    if (!consumer.group) {
      const rows = s.after.all(namespace, topic, consumer.cursor, SOLO_BATCH) as LogRow[];
      if (rows.length > 0) consumer.cursor = rows[rows.length - 1].seq;
      return { rows: rows.map((row) => ({ ...row, deliveries: 1 })) };
    }
    const now = this.now();
    const room = consumer.autoAck
      ? GROUP_BATCH
      : Math.min(GROUP_BATCH, consumer.maxInFlight - (s.inFlight.get(consumer.holder, now) as { n: number }).n);
    const rows = room > 0 ? this.claimInTransaction(consumer, room) : [];
    if (rows.length > 0) return { rows };
    // Nothing to take: wake when the next delivery's ack wait runs out (it may come back to us).
    const next = (s.nextDeadline.get(namespace, topic, consumer.group, now) as { deadline: number | null }).deadline;
    return { rows, wakeAt: next ?? undefined };
  }

  /** @internal */
  settle(consumer: SqliteConsumer, seq: number): void {
    this.statements.settleOwn.run(consumer.namespace, consumer.topic, consumer.group, seq, consumer.holder);
  }

  /** @internal Hands claimed deliveries back to the group at once. */
  release(consumer: SqliteConsumer, rows: { seq: number; sent: boolean }[]): void {
    if (rows.length === 0) return;
    const now = this.now();
    this.db.transaction(() => {
      for (const row of rows) {
        this.statements.release.run(now, row.sent ? 0 : 1, consumer.namespace, consumer.topic, consumer.group, row.seq, consumer.holder);
      }
    })();
    this.fanout.emit(Fanout.key(consumer.namespace, consumer.topic));
  }

  /** @internal */
  listen(consumer: SqliteConsumer, wake: () => void): () => void {
    return this.fanout.listen(Fanout.key(consumer.namespace, consumer.topic), wake);
  }

  /** @internal */
  forget(consumer: SqliteConsumer): void {
    this.consumers.delete(consumer);
    if (this.consumers.size === 0 && this.otherWriters) {
      clearInterval(this.otherWriters.timer);
      this.otherWriters = undefined;
    }
  }

  /**
   * `data_version` changes when another connection to the file commits (never for our own
   * writes, which the fan-out already announces): then every waiting consumer looks again.
   */
  private watchOtherWriters(): void {
    if (this.otherWriters) return;
    const version = () => this.db.pragma('data_version', { simple: true }) as number;
    const watch = { version: version(), timer: undefined as unknown as NodeJS.Timeout };
    watch.timer = setInterval(() => {
      if (!this.db.open) return;
      const now = version();
      if (now === watch.version) return;
      watch.version = now;
      this.fanout.emitAll();
    }, OTHER_WRITERS_INTERVAL_MS);
    watch.timer.unref();
    this.otherWriters = watch;
  }

  /** @internal */
  clock(): number {
    return this.now();
  }
}

/** One open consumer: a cursor of its own (no group) or a member of a group. */
class SqliteConsumer implements EventConsumer {
  readonly group: string;
  readonly autoAck: boolean;
  readonly ackWaitMs: number;
  readonly maxInFlight: number;
  /** Marks this member's claims in the pending table. */
  readonly holder = randomUUID();
  private closed = false;
  private wake: (() => void) | undefined;
  private iterating = false;

  constructor(
    private readonly store: SqliteEventStore,
    readonly namespace: string,
    readonly topic: string,
    options: ConsumeOptions,
    /** Last sequence seen (no group only). */
    public cursor: number,
  ) {
    this.group = options.group ?? '';
    this.autoAck = options.autoAck;
    this.ackWaitMs = options.ackWaitMs;
    this.maxInFlight = options.maxInFlight;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Delivery> {
    if (this.iterating) throw new Error('an event consumer is iterated once');
    this.iterating = true;
    let batch: ClaimedRow[] = [];
    let index = 0;
    /** Yielded and not yet settled: the consumer may not have received it. */
    let current: ClaimedRow | undefined;
    try {
      while (!this.closed) {
        if (index >= batch.length) {
          const taken = this.store.take(this);
          batch = taken.rows;
          index = 0;
          if (batch.length === 0) {
            await this.sleep(taken.wakeAt);
            continue;
          }
        }
        current = batch[index++];
        yield { ...toEvent(this.topic, current), deliveries: current.deliveries };
        // The caller asked for the next one, so it has this one: auto-ack settles it.
        if (this.group && this.autoAck) this.store.settle(this, current.seq);
        current = undefined;
      }
    } finally {
      if (this.group) {
        const unsent = batch.slice(index).map((row) => ({ seq: row.seq, sent: false }));
        // Manual acks: what was handed over stays pending until acknowledged or its ack wait
        // runs out. Auto-ack: an unsettled delivery may be lost with the connection, so it
        // goes back to the group (at least once rather than at most once).
        if (current && this.autoAck) unsent.push({ seq: current.seq, sent: true });
        this.store.release(this, unsent);
      }
      this.closed = true;
      this.store.forget(this);
    }
  }

  private sleep(wakeAt: number | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.closed) return resolve();
      let timer: NodeJS.Timeout | undefined;
      const stop = this.store.listen(this, () => done());
      const done = () => {
        stop();
        if (timer) clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      if (wakeAt !== undefined) timer = setTimeout(done, Math.max(1, wakeAt - this.store.clock() + 1));
      this.wake = done;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake?.();
    if (!this.iterating) this.store.forget(this);
  }
}
