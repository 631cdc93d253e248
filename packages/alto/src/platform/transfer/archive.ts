/**
 * @module platform/transfer/archive
 * The project archive: what `alto projects export` writes and `alto projects import` reads, and
 * what `alto push` and `alto pull` carry between instances. A gzipped tar stream of:
 *
 * 1. `alto-project.json`, first: the format (`alto-project/1`), the Alto version that wrote it,
 *    the project's name, the time, and how the secrets section is protected. A reader refuses an
 *    unknown format from this first entry, before reading on.
 * 2. The sections' entries, `<section>/<name>`: JSON documents, JSON-lines chunks of records (each
 *    at most CHUNK_BYTES, so neither side ever holds more than one chunk of a table) and raw
 *    objects (a space object, a function's source), streamed with their size.
 * 3. `manifest.json`, last: for every section its record count and its entries, each with its
 *    size, record count and sha256. It is written last because a stream cannot know the digests
 *    before it wrote the bytes.
 *
 * Archives are untrusted input. The reader checks, before anything is applied: the format, that
 * every entry is a regular file under a plain relative path (no `..`, no absolute path, no
 * links), the count of entries, each entry's size and the total, and that the entries are
 * exactly those the manifest lists with the same sizes and sha256. A refusal is a 400 that says
 * which entry and why.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { extract as tarExtract, pack, type Pack } from 'tar-stream';
import { errors, isAltoError } from '../../kit/errors.js';

export const ARCHIVE_FORMAT = 'alto-project/1';
export const HEADER_ENTRY = 'alto-project.json';
export const MANIFEST_ENTRY = 'manifest.json';
/** The most a JSON-lines entry holds before the writer starts the next one. */
export const CHUNK_BYTES = 4 * 1024 * 1024;

/** What a reader accepts; the defaults bound what an archive can make this process do. */
export interface ArchiveLimits {
  /** Most entries in an archive. */
  maxEntries: number;
  /** Largest entry (a space object is one entry). */
  maxEntryBytes: number;
  /** Largest sum of the entries' sizes (what gunzip may produce). */
  maxTotalBytes: number;
  /** Largest JSON entry or JSON-lines chunk, read whole into memory. */
  maxJsonBytes: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = {
  maxEntries: 1_000_000,
  maxEntryBytes: 5 * 1024 ** 3,
  maxTotalBytes: 100 * 1024 ** 3,
  maxJsonBytes: 2 * CHUNK_BYTES,
};

/** The first entry: enough to refuse an archive of another format before reading on. */
export interface ArchiveHeader {
  format: typeof ARCHIVE_FORMAT;
  altoVersion: string;
  project: string;
  createdAt: string;
  /** `passphrase`: the secrets section's entries are sealed (see transfer/passphrase); `none`: in clear. */
  secrets: 'passphrase' | 'none';
  /** `data`, `code` or `all`: which sections were asked for. */
  only: 'data' | 'code' | 'all';
  /** The project's environments the archive carries (absent in archives of Alto before environments moved with them). */
  environments?: string[];
}

export interface ManifestEntry {
  path: string;
  size: number;
  sha256: string;
  /** Records in a JSON-lines entry; absent for a document or an object. */
  records?: number;
}

export interface SectionManifest {
  /** Records, objects and documents of the section, for the summary and the dry run. */
  count: number;
  entries: ManifestEntry[];
}

export interface ArchiveManifest extends ArchiveHeader {
  sections: Record<string, SectionManifest>;
}

/** Section names: lower-case words; entry names below them: plain relative paths. */
const SECTION_NAME = /^[a-z][a-z0-9-]{0,39}$/;
const PATH_PART = /^[A-Za-z0-9._@=+,~-]{1,200}$/;
const MAX_PATH_LENGTH = 1000;

/** Refuses an entry path that is not `<section>/<plain relative parts>` (or one of the two fixed entries). */
export function checkEntryPath(path: string): { section: string; name: string } {
  const refuse = (why: string) => errors.badRequest(`the archive's entry "${path.slice(0, 200)}" ${why}: the archive was not written by Alto or was altered`);
  if (path.length > MAX_PATH_LENGTH) throw refuse('has too long a name');
  const parts = path.split('/');
  if (parts.length < 2) throw refuse('is not inside a section folder');
  const [section, ...rest] = parts;
  if (!SECTION_NAME.test(section)) throw refuse('names no known kind of section');
  for (const part of rest) {
    if (part === '.' || part === '..' || !PATH_PART.test(part)) throw refuse('is not a plain relative path (only letters, digits and . _ - @ = + , ~ between slashes)');
  }
  return { section, name: rest.join('/') };
}

/** Names a record, table or object safely as an entry part: bytes outside the plain set as `~XX`. */
export function entryPart(text: string): string {
  const encoded = Buffer.from(text, 'utf8')
    .toString('latin1')
    .replace(/[^A-Za-z0-9._@=+,-]/g, (character) => `~${character.charCodeAt(0).toString(16).padStart(2, '0')}`);
  // "." and ".." are written out, so no part is a path step.
  if (encoded === '.' || encoded === '..') return encoded.replaceAll('.', '~2e');
  if (encoded.length > 200) throw errors.badRequest(`the name "${text.slice(0, 60)}…" is too long to be carried in a project archive`);
  return encoded || '~';
}

/** The text `entryPart` encoded. */
export function entryPartText(part: string): string {
  if (part === '~') return '';
  return Buffer.from(part.replace(/~([0-9a-f]{2})/g, (_match, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8');
}

/**
 * Writes an archive to a stream, one entry after the other: a document, a JSON-lines table in
 * bounded chunks, or an object streamed with its size. `finish()` writes the manifest.
 */
export class ArchiveWriter {
  /** The gzipped tar: pipe it to a file or an HTTP response. */
  readonly output: Readable;
  private readonly tar: Pack;
  private readonly sections = new Map<string, SectionManifest>();
  private writing: Promise<void> = Promise.resolve();
  /** Rejected by `fail`: every write waiting then fails at once instead of waiting on a stream nobody reads. */
  private readonly failed: Promise<never>;
  private rejectFailed: (error: Error) => void = () => undefined;
  private failure: Error | undefined;
  /** Bytes of entries written so far (before gzip), for progress. */
  bytesWritten = 0;

  constructor(private readonly header: ArchiveHeader) {
    this.failed = new Promise<never>((_resolve, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => undefined);
    this.tar = pack();
    // Level 1: most of a big project is objects (images, archives) gzip cannot shrink, where higher levels only cost time.
    const gzip = createGzip({ level: 1 });
    this.output = this.tar.pipe(gzip);
    this.tar.on('error', (error) => gzip.destroy(error));
  }

  /** Writes the header entry; call once, first. */
  async begin(): Promise<void> {
    await this.writeBuffer(HEADER_ENTRY, Buffer.from(JSON.stringify(this.header, null, 2) + '\n'));
  }

  /** Makes a section appear in the manifest even when it has no entry. */
  section(name: string): SectionManifest {
    let section = this.sections.get(name);
    if (!section) {
      if (!SECTION_NAME.test(name)) throw new Error(`"${name}" is not a section name`);
      section = { count: 0, entries: [] };
      this.sections.set(name, section);
    }
    return section;
  }

  /** A JSON document `<section>/<name>`, counting `count` items of the section. */
  async json(section: string, name: string, value: unknown, count = 0): Promise<void> {
    await this.buffer(section, name, Buffer.from(JSON.stringify(value) + '\n'), count);
  }

  /** Raw bytes `<section>/<name>`, counting `count` items of the section. */
  async buffer(section: string, name: string, content: Buffer, count = 0, records?: number): Promise<void> {
    const path = `${section}/${name}`;
    checkEntryPath(path);
    const sha256 = await this.writeBuffer(path, content);
    const manifest = this.section(section);
    manifest.count += count;
    manifest.entries.push({ path, size: content.length, sha256, ...(records !== undefined ? { records } : {}) });
  }

  /** An object `<section>/<name>` of `size` bytes read from `body`, counting `count` items (one object). */
  async stream(section: string, name: string, size: number, body: Readable, count = 1): Promise<void> {
    const path = `${section}/${name}`;
    checkEntryPath(path);
    const hash = createHash('sha256');
    let seen = 0;
    // A failed archive stops reading the object too (its file or its S3 response).
    this.failed.catch(() => body.destroy());
    await this.serially(async () => {
      const entry = this.tar.entry({ name: path, size, mode: 0o600, mtime: new Date(0) });
      const counted = new PassThrough();
      counted.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        hash.update(chunk);
      });
      await pipeline(body, counted, entry);
    });
    if (seen !== size) throw new Error(`${path}: ${seen} bytes were read where ${size} were announced`);
    this.bytesWritten += size;
    const manifest = this.section(section);
    manifest.count += count;
    manifest.entries.push({ path, size, sha256: hash.digest('hex') });
  }

  /**
   * Records of one table as JSON lines, in entries `<prefix>/000001.jsonl`, `000002.jsonl`…,
   * each at most CHUNK_BYTES: add with `write`, end with `close`.
   */
  records(section: string, prefix: string): RecordsWriter {
    this.section(section);
    let lines: Buffer[] = [];
    let bytes = 0;
    let chunk = 0;
    const flush = async () => {
      if (lines.length === 0) return;
      chunk++;
      const count = lines.length;
      const content = Buffer.concat(lines);
      lines = [];
      bytes = 0;
      await this.buffer(section, `${prefix}/${String(chunk).padStart(6, '0')}.jsonl`, content, count, count);
    };
    return {
      write: async (record: unknown) => {
        const line = Buffer.from(JSON.stringify(record) + '\n');
        if (line.length > CHUNK_BYTES) throw errors.payloadTooLarge(`a record of ${section}/${prefix} is larger than ${CHUNK_BYTES} bytes and cannot be exported`);
        if (bytes + line.length > CHUNK_BYTES) await flush();
        lines.push(line);
        bytes += line.length;
      },
      close: flush,
    };
  }

  /** Writes the manifest and ends the stream. */
  async finish(): Promise<ArchiveManifest> {
    const manifest: ArchiveManifest = { ...this.header, sections: Object.fromEntries(this.sections) };
    await this.writeBuffer(MANIFEST_ENTRY, Buffer.from(JSON.stringify(manifest) + '\n'));
    this.tar.finalize();
    return manifest;
  }

  /**
   * Ends the stream with an error (a section failed, or the receiver went away): the reader sees
   * a broken archive, never a short valid one, and the writes in flight fail at once.
   */
  fail(error: Error): void {
    this.failure ??= error;
    this.rejectFailed(error);
    this.output.destroy(error);
    this.tar.destroy(error);
  }

  private async writeBuffer(path: string, content: Buffer): Promise<string> {
    await this.serially(
      () =>
        new Promise<void>((resolve, reject) => {
          this.tar.entry({ name: path, size: content.length, mode: 0o600, mtime: new Date(0) }, content, (error) => (error ? reject(error) : resolve()));
        }),
    );
    this.bytesWritten += content.length;
    return createHash('sha256').update(content).digest('hex');
  }

  /** Entries go into the tar one at a time, in the order they were asked for. */
  private serially(write: () => Promise<void>): Promise<void> {
    const next = this.writing.then(() => (this.failure ? Promise.reject(this.failure) : Promise.race([this.failed, write()])));
    this.writing = next.catch(() => undefined);
    return next;
  }
}

export interface RecordsWriter {
  write(record: unknown): Promise<void>;
  close(): Promise<void>;
}

/** One entry as the applying pass gives it: its place, and its content once, as a stream or whole. */
export interface ArchiveEntry {
  path: string;
  section: string;
  /** The path below the section folder. */
  name: string;
  size: number;
  body: Readable;
  /** The whole content (a JSON entry or chunk: at most maxJsonBytes). */
  buffer(): Promise<Buffer>;
  /** The JSON document the entry holds. */
  json<T>(): Promise<T>;
  /** The records of a JSON-lines entry. */
  lines<T>(): Promise<T[]>;
}

/**
 * Reads an archive kept in a file, in two passes: `verify()` checks everything and returns the
 * manifest; `entries()` then gives each section entry in order, for applying.
 */
export class ArchiveReader {
  private manifest: ArchiveManifest | undefined;

  constructor(
    private readonly file: string,
    private readonly limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
  ) {}

  /** Checks the format, every entry's path, type and size, and every digest against the manifest. */
  async verify(): Promise<ArchiveManifest> {
    const seen: ManifestEntry[] = [];
    let header: ArchiveHeader | undefined;
    let manifest: ArchiveManifest | undefined;
    let total = 0;
    await this.walk(async (path, size, body) => {
      const index = seen.length + (header ? 1 : 0) + (manifest ? 1 : 0);
      if (manifest) throw errors.badRequest(`the archive has the entry "${path.slice(0, 200)}" after its manifest: it was altered`);
      if (index === 0) {
        if (path !== HEADER_ENTRY) throw errors.badRequest(`this is not an Alto project archive: its first entry is "${path.slice(0, 200)}", not ${HEADER_ENTRY}`);
        header = checkHeader(await readWhole(body, size, this.limits.maxJsonBytes, path));
        return;
      }
      if (index >= this.limits.maxEntries + 2) throw errors.badRequest(`the archive has more than ${this.limits.maxEntries} entries, the most an import takes`);
      if (path === MANIFEST_ENTRY) {
        manifest = checkManifest(await readWhole(body, size, Math.max(this.limits.maxJsonBytes, 256 * 1024 * 1024), path));
        return;
      }
      checkEntryPath(path);
      if (size > this.limits.maxEntryBytes) throw errors.badRequest(`the archive's entry "${path}" is ${size} bytes, more than the ${this.limits.maxEntryBytes} an entry may be`);
      total += size;
      if (total > this.limits.maxTotalBytes) throw errors.badRequest(`the archive holds more than ${this.limits.maxTotalBytes} bytes, the most an import takes`);
      const hash = createHash('sha256');
      let read = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        read += chunk.length;
        hash.update(chunk);
      }
      if (read !== size) throw errors.badRequest(`the archive's entry "${path}" is cut short: the archive is incomplete`);
      seen.push({ path, size, sha256: hash.digest('hex') });
    });
    if (!header) throw errors.badRequest('the archive is empty: it is not an Alto project archive');
    if (!manifest) throw errors.badRequest('the archive has no manifest at its end: it is incomplete (an export that stopped part way, or a file cut short)');
    for (const key of ['format', 'altoVersion', 'project', 'secrets', 'only'] as const) {
      if (manifest[key] !== header[key]) throw errors.badRequest(`the archive's manifest and its header disagree on ${key}: it was altered`);
    }
    if (JSON.stringify(manifest.environments) !== JSON.stringify(header.environments)) throw errors.badRequest('the archive\'s manifest and its header disagree on environments: it was altered');
    const listed = new Map<string, ManifestEntry>();
    for (const [name, section] of Object.entries(manifest.sections)) {
      for (const entry of section.entries) {
        if (checkEntryPath(entry.path).section !== name) throw errors.badRequest(`the manifest lists "${entry.path}" under section ${name}: it was altered`);
        if (listed.has(entry.path)) throw errors.badRequest(`the manifest lists "${entry.path}" twice: it was altered`);
        listed.set(entry.path, entry);
      }
    }
    if (listed.size !== seen.length) throw errors.badRequest(`the manifest lists ${listed.size} entries and the archive holds ${seen.length}: it was altered or cut short`);
    for (const entry of seen) {
      const expected = listed.get(entry.path);
      if (!expected) throw errors.badRequest(`the archive's entry "${entry.path}" is not in its manifest: it was altered`);
      if (expected.size !== entry.size || expected.sha256 !== entry.sha256) throw errors.badRequest(`the archive's entry "${entry.path}" does not match its sha256 in the manifest: it was altered or damaged`);
    }
    this.manifest = manifest;
    return manifest;
  }

  /** The section entries in archive order, after `verify()`. Each body must be read (or its buffer taken) before the next. */
  async *entries(): AsyncGenerator<ArchiveEntry> {
    if (!this.manifest) throw new Error('verify() the archive before applying it');
    const queue: Array<{ path: string; size: number; body: Readable; ended: Promise<unknown>; done: () => void }> = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    let current: { done: () => void } | undefined;
    const stop = new AbortController();
    const walking = this.walk(
      (path, size, body) =>
        new Promise<void>((resolve) => {
          // Tar entries are streamx streams, without readableEnded: their end is watched from the start.
          const ended = new Promise((settle) => {
            body.once('end', settle);
            body.once('close', settle);
            body.once('error', settle);
          });
          queue.push({ path, size, body, ended, done: resolve });
          wake?.();
        }),
      stop.signal,
    ).then(
      () => {
        finished = true;
        wake?.();
      },
      (error: unknown) => {
        failure = error;
        finished = true;
        wake?.();
      },
    );
    const limit = this.limits.maxJsonBytes;
    try {
      while (true) {
        while (queue.length === 0 && !finished) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (failure) throw failure;
        const next = queue.shift();
        if (!next) break;
        current = next;
        if (next.path === HEADER_ENTRY || next.path === MANIFEST_ENTRY) {
          next.body.resume();
          await next.ended;
          next.done();
          continue;
        }
        const { section, name } = checkEntryPath(next.path);
        let taken = false;
        const take = () => {
          if (taken) throw new Error(`${next.path} was read twice`);
          taken = true;
          return next.body;
        };
        const buffer = () => readWhole(take(), next.size, limit, next.path);
        yield {
          path: next.path,
          section,
          name,
          size: next.size,
          get body() {
            return take();
          },
          buffer,
          json: async <T>() => JSON.parse((await buffer()).toString('utf8')) as T,
          lines: async <T>() => parseLines<T>(await buffer(), next.path),
        };
        if (!taken) next.body.resume();
        await next.ended;
        next.done();
      }
    } finally {
      if (!finished) {
        // The caller gave up part way: the walk stops at the entry it waits on.
        stop.abort();
        current?.done();
        for (const item of queue) item.done();
      }
      await walking.catch(() => undefined);
    }
  }

  /** Calls `visit` for each entry of the tar, refusing anything but regular files. */
  private async walk(visit: (path: string, size: number, body: Readable) => Promise<void>, signal?: AbortSignal): Promise<void> {
    const extract = tarExtract();
    signal?.addEventListener('abort', () => extract.destroy(new Error('stopped')), { once: true });
    const done = pipeline(createReadStream(this.file), createGunzip(), extract).catch((error: Error) => {
      throw errors.badRequest(`the archive cannot be read as a gzipped tar: ${error.message}`);
    });
    try {
      for await (const entry of extract) {
        const { name, type, size } = entry.header;
        if (type !== 'file') throw errors.badRequest(`the archive's entry "${String(name).slice(0, 200)}" is a ${type}, not a file: only files are imported`);
        await visit(name, size ?? 0, entry as unknown as Readable);
        if (signal?.aborted) break;
        entry.resume();
      }
      await done;
    } catch (error) {
      extract.destroy();
      await done.catch(() => undefined);
      if (isAltoError(error) || signal?.aborted) throw error;
      // A damaged gzip or tar surfaces here, from the extraction the pipeline fed.
      throw errors.badRequest(`the archive cannot be read as a gzipped tar: ${(error as Error).message}; it is damaged or cut short (incomplete)`);
    }
  }
}

async function readWhole(body: Readable, size: number, limit: number, path: string): Promise<Buffer> {
  if (size > limit) {
    body.resume();
    throw errors.badRequest(`the archive's entry "${path}" is ${size} bytes, more than the ${limit} a document or chunk may be`);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function parseLines<T>(content: Buffer, path: string): T[] {
  const records: T[] = [];
  let line = 0;
  for (const text of content.toString('utf8').split('\n')) {
    line++;
    if (text === '') continue;
    try {
      records.push(JSON.parse(text) as T);
    } catch {
      throw errors.badRequest(`the archive's entry "${path}" line ${line} is not JSON: it was altered`);
    }
  }
  return records;
}

function parseJson(content: Buffer, path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(content.toString('utf8'));
  } catch {
    throw errors.badRequest(`the archive's ${path} is not JSON: this is not an Alto project archive`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw errors.badRequest(`the archive's ${path} is not a JSON object`);
  return value as Record<string, unknown>;
}

export function checkHeader(content: Buffer): ArchiveHeader {
  const header = parseJson(content, HEADER_ENTRY);
  if (header.format !== ARCHIVE_FORMAT) {
    throw errors.badRequest(
      `the archive is of format ${JSON.stringify(header.format)}, and this Alto reads ${ARCHIVE_FORMAT} only: import it with the Alto version that wrote it (${String(header.altoVersion)}) or a newer one`,
    );
  }
  if (typeof header.project !== 'string' || typeof header.altoVersion !== 'string') throw errors.badRequest(`the archive's ${HEADER_ENTRY} names no project`);
  if (header.secrets !== 'passphrase' && header.secrets !== 'none') throw errors.badRequest(`the archive's ${HEADER_ENTRY} says secrets are ${JSON.stringify(header.secrets)}`);
  if (header.only !== 'data' && header.only !== 'code' && header.only !== 'all') throw errors.badRequest(`the archive's ${HEADER_ENTRY} says only ${JSON.stringify(header.only)}`);
  if (header.environments !== undefined && (!Array.isArray(header.environments) || header.environments.length > 1000 || !header.environments.every((name) => typeof name === 'string' && name.length <= 100))) {
    throw errors.badRequest(`the archive's ${HEADER_ENTRY} lists its environments wrongly`);
  }
  return header as unknown as ArchiveHeader;
}

function checkManifest(content: Buffer): ArchiveManifest {
  const manifest = parseJson(content, MANIFEST_ENTRY);
  checkHeader(Buffer.from(JSON.stringify(manifest)));
  const sections = manifest.sections;
  if (typeof sections !== 'object' || sections === null || Array.isArray(sections)) throw errors.badRequest(`the archive's ${MANIFEST_ENTRY} has no sections`);
  for (const [name, section] of Object.entries(sections as Record<string, unknown>)) {
    const entries = (section as SectionManifest | null)?.entries;
    if (!SECTION_NAME.test(name) || !Array.isArray(entries) || typeof (section as SectionManifest).count !== 'number') throw errors.badRequest(`the archive's ${MANIFEST_ENTRY} describes section "${name.slice(0, 60)}" wrongly`);
    for (const entry of entries as ManifestEntry[]) {
      if (typeof entry?.path !== 'string' || typeof entry.size !== 'number' || typeof entry.sha256 !== 'string') throw errors.badRequest(`the archive's ${MANIFEST_ENTRY} describes an entry of ${name} wrongly`);
    }
  }
  return manifest as unknown as ArchiveManifest;
}
