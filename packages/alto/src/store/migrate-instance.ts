/**
 * @module store/migrate-instance
 * `alto migrate`: copies a whole embedded instance (the SQLite file `<data>/alto.db` and the space
 * objects under `<data>/objects`) into PostgreSQL and, when given, an S3 bucket, so a cloud that
 * started on one machine can move to `--store postgres://...` and `--objects s3://...`.
 * Rows are copied as they are stored (keys keep their hashes, secrets stay sealed) with
 * `INSERT ... ON CONFLICT DO NOTHING`: a second run copies nothing, a run cut short and started
 * again completes. The few tables without a unique key are copied in one transaction each,
 * recorded in `alto_instance_migration`. Sealed values need the same master key on both sides,
 * so the command refuses when ALTO_MASTER_KEY is not the source's key. Apps are copied as run by
 * the source's node (its `node-id`): the node started on that data folder, which holds their
 * images, snapshots and volumes, runs them.
 * Function records go too, their keys stored before sealing sealed in the source first (none
 * reaches PostgreSQL in plain text); their sources are objects (`_functions/<project>`) and go
 * with the space objects. The repositories of Alto's registry go to the shared registry catalog,
 * and their blobs, from the node's image store, to the bucket (`_registry/blobs`) when one is
 * given; else they stay on the source's disk, served by the node started on that data folder.
 */
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { isSealedText, loadMasterKey, parseMasterKey, SecretCipher } from '../kit/master-key.js';
import { loadNodeId } from '../kit/node-id.js';
import { holdsNulOrLoneSurrogate } from '../kit/text.js';
import { isTextPostgresCannotHold } from './postgres/transaction.js';
import type { SqliteDatabase } from './sqlite/database.js';
import { SqliteControlStore } from './sqlite/control.js';
import { SqliteQuotaStore } from './sqlite/quota.js';
import { SqliteUsageStore } from './sqlite/usage.js';
import { PostgresControlStore } from './postgres/control.js';
import { PostgresQuotaStore } from './postgres/quota.js';
import { PostgresUsageStore } from './postgres/usage.js';
import { SqliteCronStore } from './cron/sqlite.js';
import { PostgresCronStore } from './cron/postgres.js';
import { SqliteOtpStore } from './otp/sqlite.js';
import { PostgresOtpStore } from './otp/postgres.js';
import { SqliteStreamStore } from './streams/sqlite.js';
import { PostgresStreamStore } from './streams/postgres.js';
import { SqliteFileStore } from './files/sqlite.js';
import { PostgresFileStore } from './files/postgres.js';
import { SqliteSecretStore } from './secrets/sqlite.js';
import { PostgresSecretStore } from './secrets/postgres.js';
import { SqliteUrlStore } from './urls/sqlite.js';
import { PostgresUrlStore } from './urls/postgres.js';
import { SqliteSearchStore } from './search/sqlite.js';
import { PostgresSearchStore } from './search/postgres.js';
import { SqliteUserStore } from './users/sqlite.js';
import { PostgresUserStore } from './users/postgres.js';
import { SqliteMailStore } from './mail/sqlite.js';
import { PostgresMailStore } from './mail/postgres.js';
import { SqliteDocumentStore } from './documents/sqlite.js';
import { physicalTableDefinition, PostgresDocumentStore } from './documents/postgres.js';
import { DEFAULT_DOCUMENT_LIMITS } from './documents/port.js';
import { keySecretField } from './functions/port.js';
import { SqliteFunctionStore } from './functions/sqlite.js';
import { PostgresFunctionStore } from './functions/postgres.js';
import { SqliteDomainStore } from './domains/sqlite.js';
import { PostgresDomainStore } from './domains/postgres.js';
import { SqliteAppStore } from './apps/sqlite.js';
import { PostgresAppStore } from './apps/postgres.js';
import { SqliteImageRecordStore } from './images/sqlite.js';
import { PostgresRegistryCatalog } from './registry/postgres.js';
import { REGISTRY_BLOB_NAMESPACE, registryBlobName } from './registry/port.js';
import { LocalObjectStore, TEMPORARY_FOLDER } from './objects/local.js';
import { parseObjectsUrl, S3ObjectStore } from './objects/s3.js';
import type { ObjectStore } from './objects/port.js';

export interface MigrateInstanceOptions {
  /** The embedded instance's data folder (holds `alto.db`). */
  dataDir: string;
  /** `postgres://...`: the target database. */
  postgresUrl: string;
  /** `s3://BUCKET?...`: the target bucket for space objects; without it objects are not copied. */
  objectsUrl?: string;
  /** ALTO_MASTER_KEY, which the target will run with. */
  masterKey?: string;
  /** Receives one line per part copied. */
  report(line: string): void;
}

export interface PartResult {
  part: string;
  copied: number;
  skipped: number;
}

/** What `alto migrate` leaves where it is, said in its output. */
export const NOT_MIGRATED = [
  'image records: node-local (they stay in this data folder, with the images and app snapshots; a node without a function\'s image builds it again from the stored source)',
  'cache entries: embedded unless --cache redis:// (a cache, rebuilt on use)',
  'event logs: embedded unless --events nats:// (NATS JetStream keeps its own)',
];

/** Tables with a primary or unique key: copied row by row, conflicts skipped. */
const KEYED_TABLES: Array<[source: string, target: string]> = [
  ['accounts', 'alto_accounts'],
  ['projects', 'alto_projects'],
  ['api_keys', 'alto_api_keys'],
  ['project_environments', 'alto_project_environments'],
  ['settings', 'alto_settings'],
  ['usage_daily', 'alto_usage_daily'],
  ['compute_daily', 'alto_compute_daily'],
  ['limit_settings', 'alto_limit_settings'],
  ['limit_counters', 'alto_limit_counters'],
  ['rate_buckets', 'alto_rate_buckets'],
  ['secret_settings', 'alto_secret_settings'],
  ['secrets', 'alto_secrets'],
  ['short_urls', 'alto_short_urls'],
  ['user_accounts', 'alto_user_accounts'],
  ['user_sessions', 'alto_user_sessions'],
  ['user_tokens', 'alto_user_tokens'],
  ['user_templates', 'alto_user_templates'],
  ['mail_settings', 'alto_mail_settings'],
  ['mail_outbox', 'alto_mail_outbox'],
  ['file_records', 'alto_files'],
  ['cron_jobs', 'alto_cron_jobs'],
  ['cron_runs', 'alto_cron_runs'],
  ['cron_claims', 'alto_cron_claims'],
  ['cron_signing_secrets', 'alto_cron_signing_secrets'],
  ['otp_secrets', 'alto_otp_secrets'],
  ['stream_channels', 'alto_stream_channels'],
  ['stream_messages', 'alto_stream_messages'],
  ['search_indexes', 'alto_search_indexes'],
  ['functions', 'alto_functions'],
  // Apps before their instances (a foreign key).
  ['apps', 'alto_apps'],
  ['app_instances', 'alto_app_instances'],
  ['app_snapshots', 'alto_app_snapshots'],
  ['app_reservations', 'alto_app_reservations'],
  // HTTPS names: the ACME account and the certificates (their keys sealed as they are), custom domains.
  ['acme_accounts', 'alto_acme_accounts'],
  ['tls_certificates', 'alto_tls_certificates'],
  ['custom_domains', 'alto_custom_domains'],
  // Alto's registry: manifests before what names them (foreign keys).
  ['registry_blobs', 'alto_registry_blobs'],
  ['registry_manifests', 'alto_registry_manifests'],
  ['registry_manifest_references', 'alto_registry_manifest_references'],
  ['registry_tags', 'alto_registry_tags'],
];

/** Tables without a unique key: copied whole in one transaction, once. */
const APPEND_ONLY_TABLES: Array<[source: string, target: string]> = [
  ['usage_records', 'alto_usage_records'],
  ['compute_usage_records', 'alto_compute_usage_records'],
  ['user_attempts', 'alto_user_attempts'],
];

/** Serial columns whose sequence must move past the copied ids. */
const SERIAL_COLUMNS: Array<[table: string, column: string]> = [
  ['alto_mail_outbox', 'seq'],
  ['alto_stream_messages', 'seq'],
  ['alto_search_indexes', 'id'],
  ['alto_search_documents', 'seq'],
  ['alto_db.tables', 'id'],
];

const BATCH_ROWS = 500;
const MASTER_KEY_SETTING = 'master_key_fingerprint';

/** Copies the instance; throws a sentence a person can act on when it must not run. */
export async function migrateInstance(options: MigrateInstanceOptions): Promise<PartResult[]> {
  const path = join(options.dataDir, 'alto.db');
  if (!existsSync(path)) throw new Error(`${options.dataDir} holds no embedded instance (no alto.db): pass the data folder of the instance to copy`);
  const source = openSourceExclusively(path);
  const pool = new pg.Pool({ connectionString: options.postgresUrl, max: 4 });
  pool.on('error', (error) => process.emitWarning(`postgres pool: ${error.message}`));
  const results: PartResult[] = [];
  const record = (result: PartResult) => {
    results.push(result);
    options.report(`${result.part.padEnd(28)} ${String(result.copied).padStart(7)} copied ${String(result.skipped).padStart(7)} skipped`);
    // Fault injection for the resume test: the process dies as by kill -9 once this part is copied.
    if (process.env.ALTO_MIGRATE_KILL_AFTER_PART === result.part) process.kill(process.pid, 'SIGKILL');
  };
  try {
    prepareSource(source);
    const cipher = checkMasterKey(source, options);
    await sealFunctionKeys(source, cipher);
    await prepareTarget(pool, source);
    const node = loadNodeId(options.dataDir);
    await new SqliteAppStore(source).adoptUnowned(node);
    options.report(`apps: run by node ${node}, the node started on ${options.dataDir} (it holds their images, snapshots and volumes)`);
    for (const [from, to] of KEYED_TABLES) record(await copyKeyedTable(source, pool, from, to));
    for (const [from, to] of APPEND_ONLY_TABLES) record(await copyAppendOnlyTable(source, pool, from, to));
    record(await copySearchDocuments(source, pool));
    for (const result of await copyDocuments(source, pool)) record(result);
    for (const [table, column] of SERIAL_COLUMNS) {
      await pool.query(`SELECT setval(pg_get_serial_sequence($1, $2), greatest((SELECT coalesce(max(${column}), 0) FROM ${table}), 1))`, [table, column]);
    }
  } finally {
    source.close();
    await pool.end();
  }
  if (options.objectsUrl) {
    record(await copyObjects(join(options.dataDir, 'objects'), options.objectsUrl));
    record(await copyRegistryBlobs(options.dataDir, options.objectsUrl));
  } else {
    options.report(`space objects: not copied (no --objects s3://...): copy ${join(options.dataDir, 'objects')} into the new data folder`);
    options.report(`registry blobs: not copied (no --objects s3://...): they stay in ${join(options.dataDir, 'images')}, served by the node started on ${options.dataDir}`);
  }
  return results;
}

/**
 * Opens the source with an exclusive lock: a running Alto holds the file open, so the lock fails
 * while it runs, and no Alto can start on it while the copy runs.
 */
function openSourceExclusively(path: string): SqliteDatabase {
  const db = new Database(path);
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE; COMMIT');
  } catch (error) {
    db.close();
    if ((error as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
      throw new Error(`the instance in ${path} is running (its database is locked): stop it ("Ctrl-C" on "alto up") and run "alto migrate" again`);
    }
    throw error;
  }
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  return db;
}

/** Brings an older data folder's schema up to date, as a start would, so every table exists. */
function prepareSource(db: SqliteDatabase): void {
  new SqliteControlStore(db);
  new SqliteUsageStore(db);
  new SqliteQuotaStore(db);
  new SqliteCronStore(db);
  new SqliteOtpStore(db);
  new SqliteStreamStore(db);
  new SqliteFileStore(db);
  new SqliteSecretStore(db);
  new SqliteUrlStore(db);
  new SqliteSearchStore(db);
  new SqliteUserStore(db);
  new SqliteMailStore(db);
  new SqliteDocumentStore(db, DEFAULT_DOCUMENT_LIMITS);
  new SqliteFunctionStore(db);
  new SqliteAppStore(db);
  new SqliteDomainStore(db);
  new SqliteImageRecordStore(db);
}

/** Refuses when ALTO_MASTER_KEY is missing or is not the key the source sealed its values with; answers its cipher. */
function checkMasterKey(db: SqliteDatabase, options: MigrateInstanceOptions): SecretCipher {
  const keyFile = join(options.dataDir, 'master-key');
  if (!options.masterKey) {
    throw new Error(
      `ALTO_MASTER_KEY is not set: secrets are copied sealed, so the target must run with the source's master key. ` +
        (existsSync(keyFile) ? `Set ALTO_MASTER_KEY to the key in ${keyFile} ` : 'Set ALTO_MASTER_KEY to the key the source ran with ') +
        'for this command and for every process on the new store',
    );
  }
  const key = loadMasterKey(options.dataDir, options.masterKey).key;
  if (existsSync(keyFile)) {
    const fileKey = parseMasterKey(readFileSync(keyFile, 'utf8'));
    if (fileKey && !fileKey.equals(key)) {
      throw new Error(`ALTO_MASTER_KEY is not the key in ${keyFile}, which sealed the source's secrets: set ALTO_MASTER_KEY to that key`);
    }
  }
  const cipher = new SecretCipher(key);
  const fingerprint = cipher.fingerprint();
  const recorded = db.prepare('SELECT value FROM settings WHERE name = ?').pluck().get(MASTER_KEY_SETTING) as string | undefined;
  if (recorded !== undefined && recorded !== fingerprint) {
    throw new Error(
      `ALTO_MASTER_KEY is not the master key of the source instance (fingerprint ${recorded.slice(0, 8)}…, this key's is ` +
        `${fingerprint.slice(0, 8)}…): set ALTO_MASTER_KEY to the key the source ran with`,
    );
  }
  return cipher;
}

/** Seals the function keys the source stored before sealing (as its functions manager does at start). */
async function sealFunctionKeys(db: SqliteDatabase, cipher: SecretCipher): Promise<void> {
  await new SqliteFunctionStore(db).rewriteKeySecrets((id, stored) => (isSealedText(stored) ? undefined : cipher.sealText(stored, keySecretField(id))));
}

/**
 * Creates the target's tables through each adapter's own migrations, and refuses a database that
 * already holds another cloud (copied ids would collide with its rows and be skipped).
 */
async function prepareTarget(pool: pg.Pool, source: SqliteDatabase): Promise<void> {
  await pool.query('SELECT 1');
  const opened = [
    await PostgresControlStore.open(pool),
    await PostgresUsageStore.open(pool),
    await PostgresQuotaStore.open(pool),
    await PostgresCronStore.open(pool),
    await PostgresOtpStore.open(pool),
    await PostgresStreamStore.open(pool),
    await PostgresFileStore.open(pool),
    await PostgresSecretStore.open(pool),
    await PostgresUrlStore.open(pool),
    await PostgresSearchStore.open(pool),
    await PostgresUserStore.open(pool),
    await PostgresMailStore.open(pool),
    await PostgresDocumentStore.open(pool),
    await PostgresFunctionStore.open(pool),
    await PostgresAppStore.open(pool),
    await PostgresDomainStore.open(pool),
    await PostgresRegistryCatalog.open(pool),
  ];
  for (const store of opened) await (store as { close?: () => Promise<void> }).close?.();
  await pool.query('CREATE TABLE IF NOT EXISTS alto_instance_migration (part TEXT PRIMARY KEY, copied_at BIGINT NOT NULL)');
  const sourceAccounts = source.prepare('SELECT id FROM accounts').pluck().all() as string[];
  const { rows } = await pool.query<{ id: string }>('SELECT id FROM alto_accounts');
  const foreign = rows.filter((row) => !sourceAccounts.includes(row.id));
  if (foreign.length > 0) {
    throw new Error(`the target database already holds another cloud (${foreign.length} account(s) the source does not have): migrate into an empty database`);
  }
}

function columnsOf(db: SqliteDatabase, table: string): string[] {
  return (db.prepare(`PRAGMA table_info("${table}")`).all() as Array<{ name: string }>).map((column) => column.name);
}

async function targetColumns(pool: pg.Pool, table: string): Promise<string[]> {
  const [schema, name] = table.includes('.') ? table.split('.') : ['public', table];
  const { rows } = await pool.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'NEVER'`,
    [schema, name],
  );
  return rows.map((row) => row.column_name);
}

/** Inserts rows (arrays in `columns` order) in one statement; returns how many were new. */
async function insertRows(client: pg.Pool | pg.PoolClient, table: string, columns: string[], rows: unknown[][]): Promise<number> {
  if (rows.length === 0) return 0;
  const params: unknown[] = [];
  const tuples = rows.map((row) => `(${row.map((value) => `$${params.push(value)}`).join(', ')})`);
  try {
    const result = await client.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${tuples.join(', ')} ON CONFLICT DO NOTHING`, params);
    return result.rowCount ?? 0;
  } catch (error) {
    if (isTextPostgresCannotHold(error)) throw unportableRow(table, columns, rows) ?? error;
    throw error;
  }
}

const ESCAPED_NUL_OR_SURROGATE = /\\u0000|\\u[dD][89a-fA-F]/;

/**
 * The error for a row whose text PostgreSQL cannot keep (a NUL character or half of a surrogate
 * pair), which an embedded instance kept before Alto refused such text at the door: it names the
 * table, the column and the row's first column, so a person can find and change it.
 */
function unportableRow(table: string, columns: string[], rows: unknown[][]): Error | undefined {
  for (const row of rows) {
    // A JSON column holds them as escapes (`\u0000`), which PostgreSQL's jsonb refuses as well.
    const column = row.findIndex((value) => typeof value === 'string' && (holdsNulOrLoneSurrogate(value) || ESCAPED_NUL_OR_SURROGATE.test(value)));
    if (column === -1) continue;
    return new Error(
      `${table}: the row whose ${columns[0]} is ${JSON.stringify(String(row[0])).slice(0, 80)} holds a NUL character or half of a surrogate ` +
        `pair in ${columns[column]}, which PostgreSQL cannot keep (Alto now refuses such text; older versions kept it on SQLite): ` +
        'change or delete it in the source, then run "alto migrate" again, which copies the rest and nothing twice',
    );
  }
  return undefined;
}

/** Copies `select`'s rows in batches; values go as stored (0/1 read as booleans, text as JSONB). */
async function copyRows(source: SqliteDatabase, pool: pg.Pool, select: string, target: string, columns: string[]): Promise<{ copied: number; skipped: number }> {
  let copied = 0;
  let skipped = 0;
  let batch: unknown[][] = [];
  const flush = async () => {
    const inserted = await insertRows(pool, target, columns, batch);
    copied += inserted;
    skipped += batch.length - inserted;
    batch = [];
  };
  // Read in pages, so no statement stays open across the awaits.
  const statement = source.prepare(`${select} LIMIT ? OFFSET ?`).raw();
  for (let offset = 0; ; offset += BATCH_ROWS) {
    batch = statement.all(BATCH_ROWS, offset) as unknown[][];
    if (batch.length === 0) break;
    await flush();
  }
  return { copied, skipped };
}

async function copyKeyedTable(source: SqliteDatabase, pool: pg.Pool, from: string, to: string): Promise<PartResult> {
  const wanted = new Set(await targetColumns(pool, to));
  const columns = columnsOf(source, from).filter((column) => wanted.has(column));
  const select = `SELECT ${columns.map((column) => `"${column}"`).join(', ')} FROM "${from}" ORDER BY ${hasRowid(source, from) ? 'rowid' : '1'}`;
  return { part: from, ...(await copyRows(source, pool, select, to, columns)) };
}

function hasRowid(db: SqliteDatabase, table: string): boolean {
  const sql = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?").pluck().get(table) as string;
  return !/WITHOUT\s+ROWID/i.test(sql);
}

async function copyAppendOnlyTable(source: SqliteDatabase, pool: pg.Pool, from: string, to: string): Promise<PartResult> {
  const total = source.prepare(`SELECT count(*) FROM "${from}"`).pluck().get() as number;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const marked = await client.query('INSERT INTO alto_instance_migration (part, copied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [from, Date.now()]);
    if (marked.rowCount === 0) {
      await client.query('ROLLBACK');
      return { part: from, copied: 0, skipped: total };
    }
    const wanted = new Set(await targetColumns(pool, to));
    const columns = columnsOf(source, from).filter((column) => wanted.has(column));
    const statement = source.prepare(`SELECT ${columns.map((column) => `"${column}"`).join(', ')} FROM "${from}" ORDER BY rowid LIMIT ? OFFSET ?`).raw();
    let copied = 0;
    for (let offset = 0; ; offset += BATCH_ROWS) {
      const rows = statement.all(BATCH_ROWS, offset) as unknown[][];
      if (rows.length === 0) break;
      copied += await insertRows(client, to, columns, rows);
    }
    await client.query('COMMIT');
    return { part: from, copied, skipped: 0 };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Search documents, with the text each one was indexed by (the SQLite FTS table's body). */
async function copySearchDocuments(source: SqliteDatabase, pool: pg.Pool): Promise<PartResult> {
  const indexes = source.prepare('SELECT id FROM search_indexes ORDER BY id').pluck().all() as number[];
  let copied = 0;
  let skipped = 0;
  for (const id of indexes) {
    const select = `SELECT d.seq, d.index_id, d.doc_id, d.data, f.body FROM search_documents d JOIN "search_fts_${id}" f ON f.rowid = d.seq
      WHERE d.index_id = ${id} ORDER BY d.seq`;
    const result = await copyRows(source, pool, select, 'alto_search_documents', ['seq', 'index_id', 'doc_id', 'data', 'body']);
    copied += result.copied;
    skipped += result.skipped;
  }
  return { part: 'search_documents', copied, skipped };
}

/** The db block: its catalog, each table's records (with their revisions) and row count, and indexes. */
async function copyDocuments(source: SqliteDatabase, pool: pg.Pool): Promise<PartResult[]> {
  const tables = source.prepare('SELECT id, namespace, project, name, created_at FROM documents_tables ORDER BY id').all() as Array<{
    id: number;
    namespace: string;
    project: string;
    name: string;
    created_at: number;
  }>;
  let catalogCopied = 0;
  let recordsCopied = 0;
  let recordsSkipped = 0;
  for (const table of tables) {
    const inserted = await pool.query(
      `INSERT INTO alto_db.tables (id, namespace, project, name, created_at) VALUES ($1, $2, $3, $4, to_timestamp($5::double precision / 1000))
       ON CONFLICT DO NOTHING`,
      [table.id, table.namespace, table.project, table.name, table.created_at],
    );
    catalogCopied += inserted.rowCount ?? 0;
    const { rows } = await pool.query<{ id: string }>('SELECT id FROM alto_db.tables WHERE namespace = $1 AND name = $2', [table.namespace, table.name]);
    if (Number(rows[0].id) !== table.id) {
      throw new Error(`db table "${table.name}" of ${table.namespace} has another id in the target database: migrate into an empty database`);
    }
    await pool.query(physicalTableDefinition(table.id, true));
    const result = await copyRows(
      source,
      pool,
      `SELECT seq, id, rev, json(data) FROM "db_t${table.id}" ORDER BY seq`,
      `alto_db.t${table.id}`,
      ['seq', 'id', 'rev', 'data'],
    );
    recordsCopied += result.copied;
    recordsSkipped += result.skipped;
    await pool.query(`SELECT setval(pg_get_serial_sequence('alto_db.t${table.id}', 'seq'), greatest((SELECT coalesce(max(seq), 0) FROM alto_db.t${table.id}), 1))`);
    // The row count is what the table holds now: set, not added, so a second run leaves it right.
    await pool.query(
      `WITH cleared AS (DELETE FROM alto_db.row_counts WHERE table_id = $1 AND shard <> 0)
       INSERT INTO alto_db.row_counts (table_id, shard, rows) SELECT $1, 0, count(*) FROM alto_db.t${table.id}
       ON CONFLICT (table_id, shard) DO UPDATE SET rows = excluded.rows`,
      [table.id],
    );
  }
  const indexes = source.prepare(
    'SELECT t.namespace, t.name, i.field FROM documents_indexes i JOIN documents_tables t ON t.id = i.table_id ORDER BY i.id',
  ).all() as Array<{ namespace: string; name: string; field: string }>;
  const documents = await PostgresDocumentStore.open(pool);
  let indexesCopied = 0;
  try {
    for (const index of indexes) {
      const before = (await documents.listIndexes(index.namespace, index.name)).length;
      await documents.createIndex(index.namespace, index.name, index.field.split('.'));
      if ((await documents.listIndexes(index.namespace, index.name)).length > before) indexesCopied += 1;
    }
  } finally {
    await documents.close();
  }
  return [
    { part: 'db tables', copied: catalogCopied, skipped: tables.length - catalogCopied },
    { part: 'db records', copied: recordsCopied, skipped: recordsSkipped },
    { part: 'db indexes', copied: indexesCopied, skipped: indexes.length - indexesCopied },
  ];
}

/** Space objects, streamed from the data folder into the bucket; one of the same content is skipped. */
async function copyObjects(root: string, objectsUrl: string): Promise<PartResult> {
  const result: PartResult = { part: 'space objects', copied: 0, skipped: 0 };
  if (!existsSync(root)) return result;
  const from = await LocalObjectStore.open(root);
  let to: ObjectStore | undefined;
  try {
    to = await S3ObjectStore.open(parseObjectsUrl(objectsUrl));
    for (const namespace of await listNamespaces(root)) {
      let startAfter: string | undefined;
      do {
        const page = await from.list(namespace, { startAfter, limit: 1000 });
        for (const info of page.objects) {
          const existing = await to.head(namespace, info.name);
          if (existing?.sha256 === info.sha256) {
            result.skipped += 1;
            continue;
          }
          const read = await from.get(namespace, info.name);
          if (!read) continue;
          await to.put(namespace, info.name, read.body, { contentType: info.contentType, visibility: info.visibility, expectedBytes: info.size });
          result.copied += 1;
        }
        startAfter = page.nextStartAfter;
      } while (startAfter);
    }
  } finally {
    await from.close();
    await to?.close();
  }
  return result;
}

/** The blobs the source's registry repositories hold, from its image store into the bucket. */
async function copyRegistryBlobs(dataDir: string, objectsUrl: string): Promise<PartResult> {
  const result: PartResult = { part: 'registry blobs', copied: 0, skipped: 0 };
  const source = new Database(join(dataDir, 'alto.db'), { readonly: true });
  let digests: string[];
  try {
    digests = source.prepare('SELECT digest FROM registry_blobs UNION SELECT digest FROM registry_manifests ORDER BY 1').pluck().all() as string[];
  } finally {
    source.close();
  }
  if (digests.length === 0) return result;
  const to = await S3ObjectStore.open(parseObjectsUrl(objectsUrl));
  try {
    for (const digest of digests) {
      const name = registryBlobName(digest);
      const path = join(dataDir, 'images', 'blobs', ...name.split('/'));
      if (!existsSync(path) || (await to.head(REGISTRY_BLOB_NAMESPACE, name))) {
        result.skipped += 1;
        continue;
      }
      await to.put(REGISTRY_BLOB_NAMESPACE, name, createReadStream(path), { contentType: 'application/octet-stream', visibility: 'private', expectedBytes: statSync(path).size });
      result.copied += 1;
    }
  } finally {
    await to.close();
  }
  return result;
}

/** `<project>/<environment>` for every folder two levels under the objects root. */
async function listNamespaces(root: string): Promise<string[]> {
  const namespaces: string[] = [];
  for (const project of await readdir(root, { withFileTypes: true })) {
    if (!project.isDirectory() || project.name === TEMPORARY_FOLDER || project.name.startsWith('.')) continue;
    for (const environment of await readdir(join(root, project.name), { withFileTypes: true })) {
      if (environment.isDirectory()) namespaces.push(`${project.name}/${environment.name}`);
    }
  }
  return namespaces.sort();
}
