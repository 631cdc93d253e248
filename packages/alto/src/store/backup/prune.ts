/**
 * @module store/backup/prune
 * Keeps the newest `keep` finished backups of a target and removes the rest: their manifests
 * first, then the entries of backups cut short, then every blob no kept manifest names (which
 * also clears the content a backup cut short had copied).
 * It holds the target's lock, so no backup of another process adds a manifest naming a blob
 * while it decides that blob is unused.
 */
import type { BackupTarget } from './target.js';

export interface PruneResult {
  removedBackups: string[];
  removedBlobs: number;
}

export async function pruneBackups(target: BackupTarget, keep: number): Promise<PruneResult> {
  if (!Number.isInteger(keep) || keep < 1) throw new Error(`backups to keep must be a whole number of at least 1, not ${keep}`);
  const lock = target.lock();
  try {
    const ids = await target.finishedBackups();
    const removedBackups = ids.slice(0, Math.max(0, ids.length - keep));
    for (const id of removedBackups) await target.deleteEntry(id);
    // No backup runs while the lock is held: an entry without a manifest was cut short.
    for (const id of await target.unfinishedEntries()) await target.deleteEntry(id);
    const named = new Set<string>();
    for (const id of ids.slice(removedBackups.length)) for (const file of (await target.readManifest(id)).files) named.add(file.sha256);
    let removedBlobs = 0;
    for (const digest of await target.listBlobs()) {
      if (named.has(digest)) continue;
      await target.deleteBlob(digest);
      removedBlobs++;
    }
    return { removedBackups, removedBlobs };
  } finally {
    lock.release();
  }
}
