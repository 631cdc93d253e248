/**
 * @module compute/sandbox/test-holder
 * A stand-in for an Alto process in the reaping tests (reap.test.ts), run as a program of its
 * own: `node --import tsx test-holder.ts <process|microvm> <state folder> [suspended]` starts one
 * sandbox through the driver (busybox httpd on the test root filesystem; for the process driver
 * with outbound access and platform access, so it holds nftables elements and a subnet lease
 * too), suspends it if asked, prints `{"id","host","port"}` on one line once it serves (or is
 * suspended), then waits: to be killed with SIGKILL, or stopped with SIGTERM, which ends the
 * sandbox cleanly.
 */
import { createServer } from 'node:net';
import { defaultSandboxCacheDir } from './index.js';
import { MicrovmDriver } from './microvm.js';
import type { SandboxDriver } from './port.js';
import { ProcessDriver } from './process.js';
import { ensureBusyboxRootfs } from './test-rootfs.js';

const [driverName, stateDir, state] = process.argv.slice(2);
if ((driverName !== 'process' && driverName !== 'microvm') || !stateDir || (state !== undefined && state !== 'suspended')) {
  process.stderr.write('usage: test-holder.ts <process|microvm> <state folder> [suspended]\n');
  process.exit(2);
}
const cacheDir = defaultSandboxCacheDir();
const rootfs = await ensureBusyboxRootfs(cacheDir);
// The edge the sandbox may reach (platform access): a server that answers nothing.
const edge = createServer((socket) => socket.destroy());
edge.on('error', (error) => process.stderr.write(`edge: ${error.message}\n`));
await new Promise<void>((resolve) => edge.listen(0, '127.0.0.1', resolve));
const driver: SandboxDriver = driverName === 'process' ? new ProcessDriver({ cacheDir, stateDir }) : new MicrovmDriver({ cacheDir, stateDir });
const instance = await driver.start({
  rootfs,
  entrypoint: [],
  cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'],
  env: { PATH: '/bin' },
  port: 8080,
  memoryMiB: driverName === 'process' ? 64 : 128,
  cpus: 1,
  name: 'held',
  allowOutbound: driverName === 'process',
  platform: { port: (edge.address() as { port: number }).port },
});
if (state === 'suspended') await instance.suspend();
process.stdout.write(`${JSON.stringify({ id: instance.id, host: instance.host, port: instance.port })}\n`);
process.once('SIGTERM', () => {
  void driver.close().then(() => {
    edge.close();
    process.exit(0);
  });
});
setInterval(() => undefined, 60_000);
