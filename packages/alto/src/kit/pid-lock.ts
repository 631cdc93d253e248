/**
 * @module kit/pid-lock
 * A lock file holding its owner's pid, created exclusively: held while that process lives, taken
 * over once it has died. Volumes are claimed with it by the instance that writes them and by
 * `alto backup` while it copies them, so the two never overlap, even from different processes.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid written in the lock, when a live process other than this one holds it. */
export function pidLockHolder(lock: string): number | undefined {
  let owner: number;
  try {
    owner = Number(readFileSync(lock, 'utf8').trim());
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return Number.isInteger(owner) && owner > 0 && owner !== process.pid && isProcessAlive(owner) ? owner : undefined;
}

/** Creates the lock file holding our pid; takes over one whose owner is gone. False when held. */
export function takePidLock(lock: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    // Our own pid but no claim in this process: left by an earlier run that had our pid.
    if (pidLockHolder(lock) !== undefined) return false;
    rmSync(lock, { force: true });
  }
  return false;
}
