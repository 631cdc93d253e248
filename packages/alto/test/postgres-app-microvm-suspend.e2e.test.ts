/**
 * PostgreSQL as an app on the microVM sandbox (postgres-app-suite.ts): a connection kept open
 * across a suspend of the VM (QEMU stopped) lets it suspend while quiet, and its next query wakes
 * the same instance and is answered on the same session. (See postgres-app-microvm.e2e.test.ts.)
 */
import { postgresAppSuite } from './postgres-app-suite.js';

postgresAppSuite('microvm', ['first', 'redeploy', 'restart', 'sleepy', 'killed', 'snapshot']);
