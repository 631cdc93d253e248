/**
 * @module kit/node-id
 * A node's stable name: the `node-id` file of its data folder, made once with a random id (an
 * operator may write a name of their own there before the first start). Processes sharing one
 * store tell by it which of them runs what; it stays the same across restarts and upgrades.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './files.js';

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Whether `value` is a node id: 1 to 64 letters, digits, ".", "_" or "-", not starting with "." "_" or "-". */
export function isNodeId(value: string): boolean {
  return NODE_ID.test(value);
}

/** The data folder's node id, made on first use; of two processes making it at once one id wins. */
export function loadNodeId(dataDir: string): string {
  const path = join(dataDir, 'node-id');
  if (existsSync(path)) return readNodeId(path);
  // Written whole under a temporary name, then linked into place: link never replaces a file.
  const candidate = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  writeFileAtomic(candidate, `${randomBytes(6).toString('hex')}\n`, 0o644);
  try {
    linkSync(candidate, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(candidate);
  }
  return readNodeId(path);
}

function readNodeId(path: string): string {
  const id = readFileSync(path, 'utf8').trim();
  if (!NODE_ID.test(id)) throw new Error(`${path} must hold this node's name: 1 to 64 letters, digits, ".", "_" or "-" (not starting with "." "_" or "-")`);
  return id;
}
