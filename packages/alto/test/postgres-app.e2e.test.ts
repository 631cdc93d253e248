/**
 * PostgreSQL as an app on the process sandbox: the whole suite (postgres-app-suite.ts).
 */
import { postgresAppSuite } from './postgres-app-suite.js';

postgresAppSuite('process');
