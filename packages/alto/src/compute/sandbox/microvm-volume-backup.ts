/**
 * @module compute/sandbox/microvm-volume-backup
 * A consistent copy of a microVM's volume while its instance runs (for `alto backup`).
 *
 * The volume is `<dir>/volume.ext4`, a virtio disk whose ext4 only the guest mounts: the host can
 * neither freeze it nor trust a copy of the file as it is (the guest's kernel holds recent writes
 * as dirty pages, and its journal may be mid-transaction). So:
 * 1. the guest freezes the filesystem (its agent's FIFREEZE, guest/agent.s, on the mount named by
 *    /.alto/volume.<i>): its kernel writes every dirty page and the whole journal to the disk,
 *    marks the filesystem clean and holds new writes (a writer waits, as on a slow disk);
 * 2. QEMU starts a point-in-time copy of the disk into the backup's file (QMP `blockdev-backup`,
 *    sync full: from then on a guest write to a block not yet copied first copies the block's
 *    old content), so the copy is the disk as of this moment however long it takes;
 * 3. the guest thaws at once: the freeze lasts two round trips to the guest and the job's start
 *    (milliseconds), not the copy, which goes on while the app writes;
 * 4. once the job completes, runs of zeros in the copy are made holes again (`fallocate
 *    --dig-holes`: QEMU writes the disk's holes as allocated zeros).
 * The copy is then a cleanly unmounted ext4 as of the freeze: `e2fsck -n` passes with no journal
 * to replay, and every write acknowledged before the freeze is in it.
 *
 * A suspended instance (vCPUs stopped) is let run for the freeze and stopped again, unless it was
 * resumed meanwhile; the instance's suspend waits for a freeze in progress, and a snapshot (which
 * QEMU cannot migrate with a block job running) waits for the copy. An instance just written to a
 * snapshot (ending, its volumes as its memory expects them) is not touched.
 *
 * The QMP socket is the Alto process's, so a backup made by another process (`alto backup`) asks
 * it: each running instance with volumes listens on a unix socket in its own socket folder
 * (owner-only), whose path it writes into each volume's folder (`backup-socket`); the request is
 * one JSON line (the volume's folder and the file to write), the answer one JSON line. A request
 * whose connection closes has its copy cancelled; a freeze is always followed by a thaw, bounded
 * by timeouts on this side, and QEMU ends with Alto (so a guest never stays frozen for a host that
 * is gone).
 */
import { closeSync, ftruncateSync, openSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { findCommand, run } from './common.js';
import type { InstanceState } from './port.js';
import type { QmpClient } from './qmp.js';

/** The file in a volume's folder naming the socket of the instance that holds it. */
export const VOLUME_BACKUP_POINTER = 'backup-socket';
/** The microVM driver's disk image in a volume's folder (volumes.ts). */
export const MICROVM_VOLUME_DISK = 'volume.ext4';
/** How long the guest may take to answer a freeze (writing back its dirty pages) or a thaw. */
const GUEST_ANSWER_MS = 15_000;
/** How long the copy's start may hold the filesystem frozen before it is given up and thawed. */
const MAX_FREEZE_MS = 10_000;
/** A request is one line of JSON naming two paths. */
const MAX_REQUEST_BYTES = 8_192;
const MAX_ANSWER_BYTES = 65_536;
/** The agent's records are 64 bytes: 8 naming the kind, then the directory, NUL-terminated. */
const RECORD_BYTES = 64;
const PORT_CLOSED = 9;

export type VolumeCopy = { copied: true; image: string; frozenMs: number; how: string } | { copied: false; reason: string };

/** What the backups need of their instance. */
export interface GuestAccess {
  qmp(): QmpClient | undefined;
  state(): InstanceState;
  /** A snapshot of it was just taken: its guest must not run again (microvm.ts). */
  keptBySnapshot(): boolean;
  /** Writes on the signal port; false when it is closed. */
  signal(message: Buffer): boolean;
  /** Whether the guest agent reads the signal port (records), or the supervisor shell (lines). */
  agent: boolean;
}

/**
 * The `freeze` or `thaw` of the volume at /.alto/volume.<index> on the signal port: to the agent
 * a record (`ALTOFRZE`, `ALTOTHAW`, then the path), to the supervisor shell a line.
 */
export function volumeSignal(agent: boolean, kind: 'freeze' | 'thaw', index: number): Buffer {
  const path = `/.alto/volume.${index}`;
  if (!agent) return Buffer.from(`${kind} ${path}\n`);
  const record = Buffer.alloc(RECORD_BYTES);
  record.write(kind === 'freeze' ? 'ALTOFRZE' : 'ALTOTHAW', 0, 'latin1');
  record.write(path, 8, 'latin1');
  return record;
}

/** The agent's answers (1, 2), and a signal port found closed (the instance is ending). */
const GUEST_FAILURES: Record<number, string> = { 1: 'the volume\'s mount did not open in the guest', 2: 'the guest\'s kernel refused', [PORT_CLOSED]: 'its signal port is closed (the instance is ending)' };

let jobs = 0;

/** The backups of one instance's volumes: its socket, the guest's answers, and what waits on them. */
export class MicrovmVolumeBackups {
  /** Serialises copies with each other and with the instance's snapshots. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Open while the guest is frozen, or let run from a suspension for the freeze. */
  private freezeWindow: Promise<void> | undefined;
  private answerWaiter: { kind: 'frozen' | 'thawed'; resolve: (code: number) => void } | undefined;
  /** The guest let an answer time out: it is not asked again (it may be one that cannot freeze). */
  private unanswered = false;
  private readonly connections = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly socketPath: string,
    private readonly volumes: { dir: string; disk: string }[],
    private readonly guest: GuestAccess,
  ) {}

  /** Listens on `socketPath` and names it in each volume's folder. */
  static async open(socketPath: string, volumes: { dir: string; disk: string }[], guest: GuestAccess): Promise<MicrovmVolumeBackups> {
    let backups: MicrovmVolumeBackups | undefined;
    const server = createServer((socket) => backups?.serve(socket));
    backups = new MicrovmVolumeBackups(server, socketPath, volumes, guest);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
    for (const volume of volumes) writeFileSync(join(volume.dir, VOLUME_BACKUP_POINTER), `${socketPath}\n`, { mode: 0o600 });
    return backups;
  }

  /** Stops listening and takes its name out of the volumes' folders (QEMU has ended). */
  close(): void {
    this.server.close();
    for (const socket of this.connections) socket.destroy();
    for (const volume of this.volumes) {
      const pointer = join(volume.dir, VOLUME_BACKUP_POINTER);
      try {
        if (readFileSync(pointer, 'utf8').trim() === this.socketPath) rmSync(pointer, { force: true });
      } catch {
        // Gone already.
      }
    }
  }

  /** Takes the guest's `alto:frozen N` and `alto:thawed N`; false for any other line. */
  handleAnswer(line: string): boolean {
    const answer = /^alto:(frozen|thawed) ([0-9])$/.exec(line.trim());
    if (!answer) return false;
    if (this.answerWaiter?.kind === answer[1]) this.answerWaiter.resolve(Number(answer[2]));
    return true;
  }

  /** Resolves once no freeze is in progress: a suspension waits for it. */
  async guestSettled(): Promise<void> {
    while (this.freezeWindow) await this.freezeWindow;
  }

  /** Runs `work` when no copy is in progress, and starts none meanwhile (a snapshot's migration). */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private serve(socket: Socket): void {
    this.connections.add(socket);
    const cancelled = new AbortController();
    let request = '';
    let taken = false;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.connections.delete(socket);
      cancelled.abort();
    });
    socket.on('data', (chunk: Buffer) => {
      if (taken) return;
      request += chunk.toString('utf8');
      const newline = request.indexOf('\n');
      if (newline < 0) {
        if (request.length > MAX_REQUEST_BYTES) socket.destroy();
        return;
      }
      taken = true;
      void this.answer(request.slice(0, newline), cancelled.signal).then((answer) => socket.end(`${JSON.stringify(answer)}\n`));
    });
  }

  private async answer(line: string, cancelled: AbortSignal): Promise<VolumeCopy | { error: string }> {
    let request: { volume?: unknown; destination?: unknown };
    try {
      request = JSON.parse(line);
    } catch {
      return { error: 'the request is not JSON' };
    }
    if (typeof request.volume !== 'string' || typeof request.destination !== 'string' || !request.destination.startsWith('/'))
      return { error: 'the request needs the volume\'s folder and an absolute destination' };
    const wanted = realpathOrSelf(request.volume);
    const index = this.volumes.findIndex((volume) => realpathOrSelf(volume.dir) === wanted);
    if (index < 0) return { copied: false, reason: 'its instance does not hold it any more' };
    const destination = request.destination;
    return this.exclusive(() => this.copy(index, destination, cancelled)).catch((error: Error) => ({ error: error.message }));
  }

  /** Freezes the guest's filesystem, starts QEMU's point-in-time copy into `destination`, thaws, waits for the copy. */
  private async copy(index: number, destination: string, cancelled: AbortSignal): Promise<VolumeCopy> {
    const state = this.guest.state();
    const qmp = this.guest.qmp();
    if (cancelled.aborted) return { copied: false, reason: 'the backup went away' };
    if (this.guest.keptBySnapshot()) return { copied: false, reason: 'its instance was just written to a snapshot and is ending' };
    if (!qmp || (state !== 'running' && state !== 'suspended')) return { copied: false, reason: `its instance is ${state}` };
    if (this.unanswered) return { copied: false, reason: 'its guest did not answer an earlier freeze (an instance started by an older Alto cannot freeze its volumes)' };
    const { disk } = this.volumes[index];
    // Made here at the disk's size (QEMU wants a target as large as the disk), all holes.
    let descriptor: number;
    try {
      descriptor = openSync(destination, 'wx', 0o600);
    } catch (error) {
      return { copied: false, reason: `the Alto running it cannot create the backup's file: ${(error as Error).message}` };
    }
    try {
      ftruncateSync(descriptor, statSync(disk).size);
    } catch (error) {
      rmSync(destination, { force: true });
      throw error;
    } finally {
      closeSync(descriptor);
    }
    const node = `alto-backup-${++jobs}`;
    let added = false;
    try {
      await qmp.execute('blockdev-add', {
        driver: 'raw',
        'node-name': node,
        // Blocks of zeros are written as holes where QEMU writes data (not where it writes zeros).
        discard: 'unmap',
        'detect-zeroes': 'unmap',
        file: { driver: 'file', filename: destination },
      });
      added = true;
      const finished = jobFinished(qmp, node);
      let started = false;
      // A job started and then given up (no thaw, or too late) is cancelled before its target goes.
      const giveUp = async () => {
        if (!started) return finished.stop();
        await qmp.execute('block-job-cancel', { device: node }).catch(() => undefined);
        await finished.result;
      };
      const frozen = await this.whileFrozen(index, qmp, async () => {
        await qmp.execute('blockdev-backup', { 'job-id': node, device: `volume${index}`, target: node, sync: 'full' });
        started = true;
      }).catch(async (error: Error) => {
        await giveUp();
        throw error;
      });
      if (!frozen.ok) {
        await giveUp();
        rmSync(destination, { force: true });
        return { copied: false, reason: frozen.reason };
      }
      const copyStarted = performance.now();
      const onCancel = () => void qmp.execute('block-job-cancel', { device: node }).catch(() => undefined);
      cancelled.addEventListener('abort', onCancel);
      if (cancelled.aborted) onCancel();
      const failure = await finished.result.finally(() => cancelled.removeEventListener('abort', onCancel));
      if (failure) {
        rmSync(destination, { force: true });
        return { copied: false, reason: failure };
      }
      await digHoles(destination);
      const copyMs = performance.now() - copyStarted;
      return {
        copied: true,
        image: join(this.volumes[index].dir, MICROVM_VOLUME_DISK),
        frozenMs: frozen.frozenMs,
        how: `in its microVM; QEMU copied the disk as of the freeze in ${Math.round(copyMs)} ms without stopping the instance`,
      };
    } catch (error) {
      rmSync(destination, { force: true });
      throw error;
    } finally {
      if (added) await qmp.execute('blockdev-del', { 'node-name': node }).catch(() => undefined);
    }
  }

  /**
   * Runs `start` with the volume's filesystem frozen in the guest (let run from a suspension for
   * that time), then thaws it. Says why not when the guest could not freeze it; throws when it
   * could not thaw it (the app's writes would wait forever: that must be seen).
   */
  private async whileFrozen(index: number, qmp: QmpClient, start: () => Promise<unknown>): Promise<{ ok: true; frozenMs: number } | { ok: false; reason: string }> {
    let closeWindow!: () => void;
    this.freezeWindow = new Promise((resolve) => (closeWindow = resolve));
    const wasSuspended = this.guest.state() === 'suspended';
    try {
      if (wasSuspended) await qmp.execute('cont');
      const frozenCode = await this.ask('freeze', index);
      if (frozenCode === undefined) {
        this.unanswered = true;
        // A late freeze is then undone, in order, by this thaw.
        this.guest.signal(volumeSignal(this.guest.agent, 'thaw', index));
        return { ok: false, reason: `its guest did not answer the freeze within ${GUEST_ANSWER_MS / 1000} s` };
      }
      if (frozenCode !== 0) return { ok: false, reason: `its filesystem could not be frozen: ${GUEST_FAILURES[frozenCode] ?? `failure ${frozenCode}`}` };
      const frozenAt = performance.now();
      let startError: Error | undefined;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          start(),
          new Promise((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`QEMU did not start the copy within ${MAX_FREEZE_MS} ms`)), MAX_FREEZE_MS))),
        ]);
      } catch (error) {
        startError = error as Error;
      } finally {
        clearTimeout(timer);
      }
      const thawedCode = await this.ask('thaw', index);
      const frozenMs = performance.now() - frozenAt;
      // A closed port: QEMU ends with the guest, frozen or not.
      if (thawedCode !== 0 && thawedCode !== PORT_CLOSED) {
        if (thawedCode === undefined) this.unanswered = true;
        throw new Error(
          `thawing the filesystem of volume ${this.volumes[index].dir} in its microVM failed (${thawedCode === undefined ? 'no answer' : GUEST_FAILURES[thawedCode]}); its app's writes wait until it thaws: stop or restart the app`,
        );
      }
      if (startError) return { ok: false, reason: `the copy could not start: ${startError.message}` };
      if (thawedCode === PORT_CLOSED) return { ok: false, reason: GUEST_FAILURES[PORT_CLOSED] };
      return { ok: true, frozenMs };
    } finally {
      if (wasSuspended && this.guest.state() === 'suspended') await qmp.execute('stop').catch(() => undefined);
      this.freezeWindow = undefined;
      closeWindow();
    }
  }

  /** Asks the guest to freeze or thaw the volume; its answer's code, or undefined after GUEST_ANSWER_MS. */
  private ask(kind: 'freeze' | 'thaw', index: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.answerWaiter = undefined;
        resolve(undefined);
      }, GUEST_ANSWER_MS);
      this.answerWaiter = {
        kind: kind === 'freeze' ? 'frozen' : 'thawed',
        resolve: (code) => {
          clearTimeout(timer);
          this.answerWaiter = undefined;
          resolve(code);
        },
      };
      if (!this.guest.signal(volumeSignal(this.guest.agent, kind, index))) this.answerWaiter.resolve(PORT_CLOSED);
    });
  }
}

/** The end of QEMU's job `node`: undefined when it completed, else why not. */
function jobFinished(qmp: QmpClient, node: string): { result: Promise<string | undefined>; stop(): void } {
  let stop = () => {};
  const result = new Promise<string | undefined>((resolve) => {
    const completed = (data: { device?: string; error?: string }) => data.device === node && finish(data.error ? `QEMU's copy failed: ${data.error}` : undefined);
    const cancelledJob = (data: { device?: string }) => data.device === node && finish('the copy was cancelled (the backup went away)');
    const closed = () => finish('its instance ended during the copy');
    const finish = (outcome: string | undefined) => {
      stop();
      resolve(outcome);
    };
    stop = () => {
      qmp.events.off('BLOCK_JOB_COMPLETED', completed);
      qmp.events.off('BLOCK_JOB_CANCELLED', cancelledJob);
      qmp.events.off('close', closed);
    };
    qmp.events.on('BLOCK_JOB_COMPLETED', completed);
    qmp.events.on('BLOCK_JOB_CANCELLED', cancelledJob);
    qmp.events.on('close', closed);
  });
  return { result, stop };
}

/** QEMU writes the disk's holes as zeros it allocates: made holes again where util-linux can. */
async function digHoles(file: string): Promise<void> {
  const fallocate = findCommand('fallocate');
  if (fallocate) await run(fallocate, ['--dig-holes', file], { timeoutMs: 600_000 }).catch(() => undefined);
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * Asks the Alto process whose microVM holds the volume in `folder` for a consistent copy of its
 * disk into `destination` (see the module comment). Says why not when there is none to ask.
 */
export async function requestVolumeBackup(folder: string, destination: string): Promise<VolumeCopy> {
  let socketPath: string;
  try {
    socketPath = readFileSync(join(folder, VOLUME_BACKUP_POINTER), 'utf8').trim();
  } catch {
    return { copied: false, reason: 'no microVM instance holding it takes backups now (it is starting or stopping, or its Alto predates them)' };
  }
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ volume: folder, destination })}\n`));
    socket.on('data', (chunk: string) => {
      answer += chunk;
      if (answer.length > MAX_ANSWER_BYTES) socket.destroy(new Error('the instance\'s answer is too long'));
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') resolve({ copied: false, reason: 'the microVM instance that held it is gone (it is stopping)' });
      else resolve({ copied: false, reason: `its microVM instance could not be asked: ${error.message}` });
    });
    socket.on('close', () => {
      const line = answer.split('\n')[0];
      if (!line) return resolve({ copied: false, reason: 'its microVM instance ended before it answered' });
      let parsed: VolumeCopy | { error: string };
      try {
        parsed = JSON.parse(line);
      } catch {
        return resolve({ copied: false, reason: 'its microVM instance answered something else than JSON' });
      }
      if ('error' in parsed) reject(new Error(parsed.error));
      else resolve(parsed);
    });
  });
}
