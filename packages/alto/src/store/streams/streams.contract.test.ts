/**
 * Runs the streams store contract against every adapter, each opened twice on the same data as two
 * processes would: SQLite (a temporary file), PostgreSQL (a database of its own, created from
 * ALTO_TEST_POSTGRES_URL and dropped at the end) and NATS JetStream (two connections to
 * ALTO_TEST_NATS_URL, with streams and a bucket of this run's own scope, deleted at the end).
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'nats';
import { twoPostgresStores, twoSqliteStores } from '../two-processes.js';
import { runStreamStoreContract } from './contract.js';
import { NatsStreamStore } from './nats.js';
import { PostgresStreamStore } from './postgres.js';
import { SqliteStreamStore } from './sqlite.js';

function natsUrl(): string {
  const url = process.env.ALTO_TEST_NATS_URL;
  if (!url) throw new Error('ALTO_TEST_NATS_URL is not set: run ". scripts/test-services.sh" first to start NATS with JetStream');
  return url;
}

runStreamStoreContract('sqlite', async () => twoSqliteStores('streams', (db) => new SqliteStreamStore(db)));
runStreamStoreContract('postgres', () => twoPostgresStores('streams', (pool) => PostgresStreamStore.open(pool)));
runStreamStoreContract('nats', async () => {
  const scope = `test-${randomBytes(4).toString('hex')}`;
  const connections = [await connect({ servers: natsUrl() }), await connect({ servers: natsUrl() })];
  // Both at once, as two processes starting together would create the bucket.
  const [store, other] = await Promise.all(connections.map((nc) => NatsStreamStore.open(nc, { scope })));
  return {
    store,
    other,
    async dispose() {
      const jsm = await connections[0].jetstreamManager();
      const ours = [`KV_${NatsStreamStore.bucketName(scope)}`];
      for await (const name of jsm.streams.names()) if (name.startsWith(store.streamPrefix)) ours.push(name);
      for (const name of ours) await jsm.streams.delete(name);
      for (const nc of connections) await nc.drain();
    },
  };
});
