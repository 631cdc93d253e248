/**
 * Runs one batch app with the process driver in a process of its own, for the sandbox isolation
 * tests that need Alto started a certain way (with a descriptor it inherited, under a terminal).
 * Usage: node --import tsx sandbox-driver-child.ts <state dir> <rootfs> <shell script> [<inherited fd>]
 * Prints `child: fd N open` when the inherited descriptor is there, then each app line as
 * `app: <line>`, then `child: done`.
 */
import { fstatSync } from 'node:fs';
import { defaultSandboxCacheDir } from '../../src/compute/sandbox/index.js';
import { ProcessDriver } from '../../src/compute/sandbox/process.js';

const [stateDir, rootfs, script, inherited] = process.argv.slice(2);
if (inherited) {
  fstatSync(Number(inherited));
  console.log(`child: fd ${inherited} open`);
}
const driver = new ProcessDriver({ cacheDir: defaultSandboxCacheDir(), stateDir });
const instance = await driver.start({ rootfs, entrypoint: [], cmd: ['sh', '-c', script], env: { PATH: '/bin' }, port: 0, memoryMiB: 64, cpus: 1, name: 'child' });
await instance.exited;
for await (const line of instance.logs()) console.log(`app: ${line.line}`);
await driver.close();
console.log('child: done');
