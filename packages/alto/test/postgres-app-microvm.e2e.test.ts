/**
 * PostgreSQL as an app on the microVM sandbox (postgres-app-suite.ts): the first start, initdb
 * into the volume's disk, then a password login that commits rows. Under tcg here each start
 * takes most of a minute, so each microVM test of the suite has a file of its own (this one,
 * -suspend and -kill); the redeploy, the restart of Alto and the suspend with no connection
 * open, which run the same code above the driver, are left to the process sandbox's run (all six
 * passed on this driver once).
 */
import { postgresAppSuite } from './postgres-app-suite.js';

postgresAppSuite('microvm', ['redeploy', 'restart', 'sleepy', 'pooled', 'killed', 'snapshot']);
