/**
 * @module cli/run
 * Entry point that runs the CLI from the TypeScript sources (`node --import tsx src/cli/run.ts`),
 * used by tests; the installed `alto` command runs the compiled copy.
 */
import { main } from './main.js';

await main(process.argv);
