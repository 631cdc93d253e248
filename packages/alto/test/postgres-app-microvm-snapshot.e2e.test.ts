/**
 * PostgreSQL as an app on the microVM sandbox (postgres-app-suite.ts): suspended with no
 * connection open, it is snapshotted to disk (ALTO_SNAPSHOT_AFTER_MS: after 2 s here), its volume
 * left as the paused guest had it; the next connection restores it (origin "snapshot", not a
 * boot) with its rows, and it goes on writing. (See postgres-app-microvm.e2e.test.ts.)
 */
import { postgresAppSuite } from './postgres-app-suite.js';

postgresAppSuite('microvm', ['first', 'redeploy', 'restart', 'sleepy', 'pooled', 'killed'], { ALTO_SNAPSHOT_AFTER_MS: '2000' });
