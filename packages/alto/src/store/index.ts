/**
 * @module store
 * The one factory that opens every storage port by configuration, so blocks and platform receive
 * ports ready and never pick an adapter. Backends: always the embedded SQLite file (WAL) in the
 * data folder; a PostgreSQL pool with `--store postgres://...`; a Redis client with
 * `--cache redis://...`; a NATS connection (JetStream required) with `--events nats://...`; space
 * objects on the local disk, or in an S3-compatible bucket with `--objects s3://...`.
 * Ports, each on PostgreSQL when `--store` is given, else on SQLite: `control` (accounts,
 * projects, keys, settings, and the lock bootstrap runs under), `usage`, `quota`, `cron`, `otp`,
 * `streams` (stream; but see `--events`), `files` (file), `secrets` (secret), `urls` (url),
 * `search`, `users` (user, and the accounts' failed logins), `mail` (the platform's Mailer),
 * `documents` (db) and `functions` (the functions' records). `cache` is on Redis with `--cache`,
 * else SQLite; `events` (event) and `streams` on NATS JetStream and `messages` (mq) on NATS
 * subjects with `--events` (NATS wins over PostgreSQL for the stream, as for events), else SQLite
 * and in process; `objects` (space, and the functions' sources) on S3 or disk.
 * `apps`, on PostgreSQL with `--store` too, holds every app of the cloud with the node that runs it;
 * `nodes` the cloud's nodes with their leases, capacity and draining flag (one node on SQLite).
 * `domains` (ACME accounts, certificates, challenges, apps' custom domains) is shared the same way,
 * and `leader` gives a periodic job to one process at a time (an advisory lock on PostgreSQL, a
 * lease row on SQLite).
 * `images` (the image records) is always on SQLite: images are a cache on each node's disk, so
 * each node keeps the records of the images it holds (a function's image is built again from
 * its kept source where missing). `registry` (the repositories of Alto's own registry: what each
 * project pushed) is on PostgreSQL with `--store`, so every node answers for every push; its
 * blobs are shared through `objects` when that is a bucket. `requestLog` (a row per API call and
 * app request, by project) is on PostgreSQL with `--store`, so any node's edge reads every node's rows.
 */
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { connect as connectNats, type NatsConnection } from 'nats';
import type { ControlStore } from './control.js';
import type { QuotaStore } from './quota.js';
import type { UsageStore } from './usage.js';
import { openSqlite, type SqliteDatabase } from './sqlite/database.js';
import { SqliteControlStore } from './sqlite/control.js';
import { SqliteQuotaStore } from './sqlite/quota.js';
import { SqliteUsageStore } from './sqlite/usage.js';
import { PostgresControlStore } from './postgres/control.js';
import { PostgresQuotaStore } from './postgres/quota.js';
import { PostgresUsageStore } from './postgres/usage.js';
import type { CronStore } from './cron/port.js';
import { PostgresCronStore } from './cron/postgres.js';
import { SqliteCronStore } from './cron/sqlite.js';
import type { OtpStore } from './otp/port.js';
import { PostgresOtpStore } from './otp/postgres.js';
import { SqliteOtpStore } from './otp/sqlite.js';
import type { StreamStore } from './streams/port.js';
import { NatsStreamStore } from './streams/nats.js';
import { PostgresStreamStore } from './streams/postgres.js';
import { SqliteStreamStore } from './streams/sqlite.js';
import type { ObjectStore } from './objects/port.js';
import { LocalObjectStore } from './objects/local.js';
import { parseObjectsUrl, S3ObjectStore } from './objects/s3.js';
import type { FileStore } from './files/port.js';
import { PostgresFileStore } from './files/postgres.js';
import { SqliteFileStore } from './files/sqlite.js';
import type { SecretStore } from './secrets/port.js';
import { PostgresSecretStore } from './secrets/postgres.js';
import { SqliteSecretStore } from './secrets/sqlite.js';
import type { UrlStore } from './urls/port.js';
import { PostgresUrlStore } from './urls/postgres.js';
import { SqliteUrlStore } from './urls/sqlite.js';
import type { SearchStore } from './search/port.js';
import { PostgresSearchStore } from './search/postgres.js';
import { SqliteSearchStore } from './search/sqlite.js';
import type { UserStore } from './users/port.js';
import { PostgresUserStore } from './users/postgres.js';
import { SqliteUserStore } from './users/sqlite.js';
import type { MailStore } from './mail/port.js';
import { PostgresMailStore } from './mail/postgres.js';
import { SqliteMailStore } from './mail/sqlite.js';
import type { CacheStore } from './cache/port.js';
import { RedisCacheStore } from './cache/redis.js';
import { SqliteCacheStore } from './cache/sqlite.js';
import type { EventStore, MessageBus } from './events/port.js';
import { NatsEventStore, NatsMessageBus } from './events/nats.js';
import { SqliteEventStore } from './events/sqlite.js';
import { InProcessMessageBus } from './events/fanout.js';
import { DEFAULT_DOCUMENT_LIMITS, type DocumentLimits, type DocumentStore } from './documents/port.js';
import { PostgresDocumentStore } from './documents/postgres.js';
import { SqliteDocumentStore } from './documents/sqlite.js';
import type { FunctionStore } from './functions/port.js';
import { PostgresFunctionStore } from './functions/postgres.js';
import { SqliteFunctionStore } from './functions/sqlite.js';
import type { AppStore } from './apps/port.js';
import { PostgresAppStore } from './apps/postgres.js';
import { SqliteAppStore } from './apps/sqlite.js';
import type { NodeStore } from './nodes/port.js';
import { PostgresNodeStore } from './nodes/postgres.js';
import { SqliteNodeStore } from './nodes/sqlite.js';
import type { ImageRecordStore } from './images/port.js';
import type { DomainStore } from './domains/port.js';
import { PostgresDomainStore } from './domains/postgres.js';
import { SqliteDomainStore } from './domains/sqlite.js';
import type { SingletonLock } from './leader/port.js';
import { PostgresSingletonLock } from './leader/postgres.js';
import { SqliteSingletonLock } from './leader/sqlite.js';
import { SqliteImageRecordStore } from './images/sqlite.js';
import type { RegistryCatalog } from './registry/port.js';
import { PostgresRegistryCatalog } from './registry/postgres.js';
import { SqliteRegistryCatalog } from './registry/sqlite.js';
import type { RequestLogStore } from './request-log/port.js';
import { PostgresRequestLogStore } from './request-log/postgres.js';
import { SqliteRequestLogStore } from './request-log/sqlite.js';

export * from './control.js';
export * from './usage.js';
export * from './quota.js';
export { openSqlite, migrate, type SqliteDatabase } from './sqlite/database.js';
/** For the edge's answers: text the PostgreSQL store refuses is the caller's to fix (a 400), not a fault. */
export { isTextPostgresCannotHold } from './postgres/transaction.js';

export interface StoreOptions {
  dataDir: string;
  /**
   * `postgres://...`: the control plane (accounts, projects, keys, settings), usage, quota
   * counters, and db, secret and the other blocks with a PostgreSQL adapter, on PostgreSQL.
   */
  postgresUrl?: string;
  /** `redis://...`: the cache on Redis. */
  redisUrl?: string;
  /** `nats://...`: events and the stream block (JetStream), and mq, on NATS. */
  natsUrl?: string;
  /** `s3://BUCKET?endpoint=...`: space objects in an S3-compatible bucket; else files under `<data>/objects`. */
  objectsUrl?: string;
  /** The db block's limits (record size, rows, tables, indexes; `ALTO_DB_*`); the defaults when absent. */
  documentLimits?: DocumentLimits;
}

export interface Stores {
  /** What backs the stores, for `alto status`. */
  description: string;
  control: ControlStore;
  usage: UsageStore;
  /**
   * Limit settings, rate buckets and monthly counters, where the control state is: every process
   * sharing the data folder, or the PostgreSQL database, shares them.
   */
  quota: QuotaStore;
  /** Cron jobs, their runs and signing secrets. */
  cron: CronStore;
  /** One-time password secrets, replay records and failure counters. */
  otp: OtpStore;
  /**
   * The stream block's channels and messages: on NATS JetStream with `--events nats://...`, else
   * on PostgreSQL with `--store postgres://...`, else embedded.
   */
  streams: StreamStore;
  /** Space objects: on the local disk, or in the S3 bucket `--objects` names. */
  objects: ObjectStore;
  /** The file block's text files. */
  files: FileStore;
  /** The secret block's sealed values and the master key's fingerprint. */
  secrets: SecretStore;
  /** The url block's short URLs and hit counts. */
  urls: UrlStore;
  /** The search block's indexes and records (SQLite FTS5, or PostgreSQL full-text search). */
  search: SearchStore;
  /** The user block's users, sessions, tokens, templates and failed-login counts. */
  users: UserStore;
  /** The platform Mailer's outbox, templates and sending limits' counts. */
  mail: MailStore;
  /** The cache block's entries: on Redis with `--cache redis://...`, else embedded. */
  cache: CacheStore;
  /** The event block's durable logs: on NATS JetStream with `--events nats://...`, else embedded. */
  events: EventStore;
  /** The mq block's publish and subscribe: over NATS subjects with `--events nats://...`, else in this process. */
  messages: MessageBus;
  /** The db block's tables, records, indexes and change feed. */
  documents: DocumentStore;
  /** The functions' records (their sources are objects in `objects`). */
  functions: FunctionStore;
  /** Every app of the cloud with the node that runs it, its instances, snapshots and reserved names. */
  apps: AppStore;
  /** The cloud's nodes: their leases, capacity and draining flag. */
  nodes: NodeStore;
  /** HTTPS names: ACME accounts, certificates and challenges, and the apps' custom domains. */
  domains: DomainStore;
  /** Roles one process of the cloud holds at a time (store/leader), such as renewing certificates. */
  leader: SingletonLock;
  /** This node's image records (its images' blobs are on its disk): always embedded, never shared. */
  images: ImageRecordStore;
  /** The repositories of Alto's own registry: their blobs, manifests and tags. */
  registry: RegistryCatalog;
  /** The request log: a row per API call and app request through the edge, by project. */
  requestLog: RequestLogStore;
  /** The embedded SQLite database, for blocks that keep their data beside the control state. */
  sqlite: SqliteDatabase;
  /** Open when Alto runs with `--store postgres://...`. */
  postgres?: pg.Pool;
  /** Open when Alto runs with `--cache redis://...`. */
  redis?: Redis;
  /** Open when Alto runs with `--events nats://...`; JetStream is enabled on it. */
  nats?: NatsConnection;
  close(): Promise<void>;
}

/** Hides the password in a connection URL, for logs and status. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** The ports PostgreSQL holds when `--store postgres://...` is given. */
type SharedPorts = Pick<Stores, 'control' | 'usage' | 'quota' | 'cron' | 'otp' | 'streams' | 'files' | 'secrets' | 'urls' | 'search' | 'users' | 'mail' | 'documents' | 'apps' | 'functions' | 'nodes' | 'domains' | 'registry' | 'requestLog'>;

export async function openStores(options: StoreOptions): Promise<Stores> {
  const path = join(options.dataDir, 'alto.db');
  const sqlite = openSqlite(path);
  const parts = [`sqlite (WAL) at ${path}`];
  const documentLimits = options.documentLimits ?? DEFAULT_DOCUMENT_LIMITS;
  let postgres: pg.Pool | undefined;
  let redis: Redis | undefined;
  let nats: NatsConnection | undefined;
  let objects: ObjectStore | undefined;
  let shared: SharedPorts | undefined;
  let postgresControl: PostgresControlStore | undefined;
  let events: EventStore | undefined;
  let natsStreams: StreamStore | undefined;
  try {
    if (options.postgresUrl) {
      postgres = new pg.Pool({ connectionString: options.postgresUrl, max: 20 });
      // An idle client cut off by the server (a PostgreSQL restart) must not crash Alto: the
      // pool drops it and the next query opens a new connection.
      postgres.on('error', (error) => process.emitWarning(`postgres pool: ${error.message}`));
      await postgres.query('SELECT 1');
      postgresControl = await PostgresControlStore.open(postgres);
      shared = {
        control: postgresControl,
        usage: await PostgresUsageStore.open(postgres),
        quota: await PostgresQuotaStore.open(postgres),
        cron: await PostgresCronStore.open(postgres),
        otp: await PostgresOtpStore.open(postgres),
        streams: await PostgresStreamStore.open(postgres),
        files: await PostgresFileStore.open(postgres),
        secrets: await PostgresSecretStore.open(postgres),
        urls: await PostgresUrlStore.open(postgres),
        search: await PostgresSearchStore.open(postgres),
        users: await PostgresUserStore.open(postgres),
        mail: await PostgresMailStore.open(postgres),
        documents: await PostgresDocumentStore.open(postgres, documentLimits),
        functions: await PostgresFunctionStore.open(postgres),
        apps: await PostgresAppStore.open(postgres),
        nodes: await PostgresNodeStore.open(postgres),
        domains: await PostgresDomainStore.open(postgres),
        registry: await PostgresRegistryCatalog.open(postgres),
        requestLog: await PostgresRequestLogStore.open(postgres),
      };
      parts.push(`postgres at ${redactUrl(options.postgresUrl)}`);
    }
    if (options.redisUrl) {
      redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
      await redis.connect();
      await redis.ping();
      parts.push(`redis at ${redactUrl(options.redisUrl)}`);
    }
    if (options.natsUrl) {
      nats = await openNats(options.natsUrl);
      events = await NatsEventStore.open(nats);
      natsStreams = await NatsStreamStore.open(nats);
      parts.push(`nats at ${redactUrl(options.natsUrl)}`);
    }
    if (options.objectsUrl) {
      const s3 = await S3ObjectStore.open(parseObjectsUrl(options.objectsUrl));
      objects = s3;
      parts.push(s3.describe());
    } else {
      const root = join(options.dataDir, 'objects');
      objects = await LocalObjectStore.open(root);
      parts.push(`objects on disk at ${root}`);
    }
  } catch (error) {
    await postgresControl?.close();
    sqlite.close();
    await postgres?.end();
    redis?.disconnect();
    await nats?.close();
    await objects?.close();
    throw new Error(`cannot open the configured store: ${(error as Error).message}`);
  }
  const control = shared?.control ?? new SqliteControlStore(sqlite);
  const leader: SingletonLock = options.postgresUrl ? new PostgresSingletonLock(options.postgresUrl) : new SqliteSingletonLock(sqlite);
  const usage = shared?.usage ?? new SqliteUsageStore(sqlite, { writerThread: true });
  const images = new SqliteImageRecordStore(sqlite);
  const requestLog = shared?.requestLog ?? new SqliteRequestLogStore(sqlite, { writerThread: true });
  return {
    description: parts.join(', '),
    control,
    usage,
    quota: shared?.quota ?? new SqliteQuotaStore(sqlite),
    cron: shared?.cron ?? new SqliteCronStore(sqlite),
    otp: shared?.otp ?? new SqliteOtpStore(sqlite),
    streams: natsStreams ?? shared?.streams ?? new SqliteStreamStore(sqlite),
    files: shared?.files ?? new SqliteFileStore(sqlite),
    secrets: shared?.secrets ?? new SqliteSecretStore(sqlite),
    urls: shared?.urls ?? new SqliteUrlStore(sqlite),
    search: shared?.search ?? new SqliteSearchStore(sqlite),
    users: shared?.users ?? new SqliteUserStore(sqlite),
    mail: shared?.mail ?? new SqliteMailStore(sqlite),
    documents: shared?.documents ?? new SqliteDocumentStore(sqlite, documentLimits),
    functions: shared?.functions ?? new SqliteFunctionStore(sqlite),
    apps: shared?.apps ?? new SqliteAppStore(sqlite),
    nodes: shared?.nodes ?? new SqliteNodeStore(sqlite),
    domains: shared?.domains ?? new SqliteDomainStore(sqlite),
    leader,
    images,
    registry: shared?.registry ?? new SqliteRegistryCatalog(images),
    requestLog,
    cache: redis ? new RedisCacheStore(redis) : new SqliteCacheStore(sqlite),
    events: events ?? new SqliteEventStore(sqlite),
    messages: nats ? new NatsMessageBus(nats) : new InProcessMessageBus(),
    objects,
    sqlite,
    postgres,
    redis,
    nats,
    async close() {
      // The control store's notification listener (a connection, or a file watch) first.
      await control.close();
      await leader.close();
      await postgres?.end();
      await nats?.drain().catch(() => nats?.close());
      if (redis) await redis.quit().catch(() => redis?.disconnect());
      await objects.close();
      // The writer threads' last batches before the file closes.
      await usage.close?.();
      await requestLog.close?.();
      sqlite.close();
    },
  };
}

/** Connects to NATS (credentials may sit in the URL) and checks that JetStream is on. */
async function openNats(url: string): Promise<NatsConnection> {
  const parsed = new URL(url);
  const connection = await connectNats({
    servers: `${parsed.hostname}:${parsed.port || 4222}`,
    user: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    pass: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    name: 'alto',
    // Keep trying through a NATS restart; calls fail meanwhile rather than Alto exiting.
    maxReconnectAttempts: -1,
  });
  try {
    await (await connection.jetstreamManager()).getAccountInfo();
  } catch (error) {
    await connection.close();
    throw new Error(`NATS at ${redactUrl(url)} has no JetStream (start nats-server with -js): ${(error as Error).message}`);
  }
  return connection;
}
