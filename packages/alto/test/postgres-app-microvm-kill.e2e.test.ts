/**
 * PostgreSQL as an app on the microVM sandbox (postgres-app-suite.ts): SIGKILL of the VM's QEMU
 * loses no committed row, and the next instance recovers them from the write-ahead log on the
 * volume's disk. (See postgres-app-microvm.e2e.test.ts.)
 */
import { postgresAppSuite } from './postgres-app-suite.js';

postgresAppSuite('microvm', ['first', 'redeploy', 'restart', 'sleepy', 'pooled', 'snapshot']);
