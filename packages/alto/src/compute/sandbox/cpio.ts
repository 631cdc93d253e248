/**
 * @module compute/sandbox/cpio
 * A writer for the `newc` cpio format the Linux kernel unpacks as an initramfs. Written here
 * (about sixty lines) rather than driving the `cpio` tool because entries need owners and device
 * nodes (`/dev/console`) that an unprivileged copy of a tree could not carry, and because the
 * archive is assembled from files scattered over the kernel package and the host.
 */
import { readFileSync } from 'node:fs';

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer | string; mode?: number }
  | { kind: 'hostfile'; path: string; source: string; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function padTo4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function record(ino: number, mode: number, name: string, data: Buffer, rdev: [number, number] = [0, 0]): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`);
  const header = Buffer.from(
    '070701' +
      [ino, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0].map(hex8).join(''),
    'ascii',
  );
  const headerAndName = header.length + nameBytes.length;
  return [header, nameBytes, padTo4(headerAndName), data, padTo4(data.length)];
}

/** The archive as one buffer; paths are relative to the initramfs root ('init', 'bin/busybox'). */
export function buildCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const entry of entries) {
    const name = entry.path.replace(/^\/+/, '');
    switch (entry.kind) {
      case 'dir':
        parts.push(...record(ino++, S_IFDIR | (entry.mode ?? 0o755), name, Buffer.alloc(0)));
        break;
      case 'file':
        parts.push(...record(ino++, S_IFREG | (entry.mode ?? 0o644), name, Buffer.from(entry.data)));
        break;
      case 'hostfile':
        parts.push(...record(ino++, S_IFREG | (entry.mode ?? 0o755), name, readFileSync(entry.source)));
        break;
      case 'symlink':
        parts.push(...record(ino++, S_IFLNK | 0o777, name, Buffer.from(entry.target)));
        break;
      case 'chardev':
        parts.push(...record(ino++, S_IFCHR | (entry.mode ?? 0o600), name, Buffer.alloc(0), [entry.major, entry.minor]));
        break;
    }
  }
  parts.push(...record(0, 0, 'TRAILER!!!', Buffer.alloc(0)));
  const archive = Buffer.concat(parts);
  // The kernel reads the archive in 512-byte blocks; pad like the cpio tool does.
  return Buffer.concat([archive, Buffer.alloc((512 - (archive.length % 512)) % 512)]);
}
