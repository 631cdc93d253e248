/**
 * @module compute/images/import
 * Images from files, for machines with no registry access: an OCI image layout folder
 * (`oci-layout`, `index.json`, `blobs/sha256/...`), the same layout in a tarball
 * (`skopeo copy oci-archive:`, `docker save` from Docker 25 on), or a classic `docker save`
 * tarball (`manifest.json` naming a config and uncompressed `layer.tar` files, from which an OCI
 * manifest is written). Tarballs are read in one streaming pass; every blob is hashed on its
 * way into the store and checked against the digest it is named by.
 */
import { closeSync, createReadStream, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { AltoError, errors } from '../../kit/errors.js';
import type { BlobStore } from './blob-store.js';
import { splitDigest } from './blob-store.js';
import {
  Descriptor,
  ImageIndex,
  MAX_DOCUMENT_BYTES,
  MediaType,
  parseManifest,
  selectPlatform,
  type WantedPlatform,
} from './manifest.js';

export interface ImportedImage {
  /** Digest of the image manifest (for an index: of the platform's manifest), now in the store. */
  digest: string;
  mediaType: string;
  indexDigest?: string;
  /** Names the archive gives the image: full references (`redis:7`) only. */
  names: string[];
  /** Tag-only names (`v1` from an OCI `ref.name`), usable with a repository the caller names. */
  tags: string[];
}

export interface ImportResult {
  images: ImportedImage[];
  /** Every blob this import put in the store, for cleaning up what no image ended up using. */
  storedBlobs: Set<string>;
}

type BlobEnsurer = (descriptor: Descriptor) => Promise<void>;

/** Reads a folder or a tarball; `platform` picks the image of an index. */
export async function importImageArchive(path: string, blobs: BlobStore, platform: WantedPlatform): Promise<ImportResult> {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    throw errors.notFound(`${path} does not exist on the server's machine (the path is read by the server, not the CLI)`);
  }
  return isDirectory ? importLayoutFolder(path, blobs, platform) : importTarball(path, blobs, platform);
}

async function importLayoutFolder(dir: string, blobs: BlobStore, platform: WantedPlatform): Promise<ImportResult> {
  const layoutFile = join(dir, 'oci-layout');
  if (!existsSync(layoutFile) || !existsSync(join(dir, 'index.json'))) {
    throw errors.badRequest(`${dir} is not an OCI image layout: it needs an oci-layout file and an index.json`);
  }
  checkLayoutVersion(readFileSync(layoutFile), dir);
  const storedBlobs = new Set<string>();
  const ensure: BlobEnsurer = async (descriptor) => {
    const [algorithm, hex] = splitDigest(descriptor.digest);
    const file = join(dir, 'blobs', algorithm, hex);
    if (!existsSync(file)) throw errors.badRequest(`the OCI layout ${dir} lacks the blob ${descriptor.digest}`);
    if (!blobs.has(descriptor.digest)) await blobs.putStream(createReadStream(file, { highWaterMark: 1 << 20 }), descriptor, `the OCI layout ${dir}`);
    storedBlobs.add(descriptor.digest);
  };
  const images = await readIndex(readFileSync(join(dir, 'index.json')), ensure, blobs, platform, dir);
  return { images, storedBlobs };
}

function checkLayoutVersion(bytes: Buffer, where: string): void {
  let version: unknown;
  try {
    version = (JSON.parse(bytes.toString('utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch {
    throw errors.badRequest(`the oci-layout file of ${where} is not JSON`);
  }
  if (version !== '1.0.0') throw errors.badRequest(`${where} is an OCI layout of version ${JSON.stringify(version)}; only 1.0.0 is known`);
}

/** The images an `index.json` lists, each resolved to one platform and made whole in the store. */
async function readIndex(bytes: Buffer, ensure: BlobEnsurer, blobs: BlobStore, platform: WantedPlatform, where: string): Promise<ImportedImage[]> {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw errors.badRequest(`the index.json of ${where} is not JSON: ${(error as Error).message}`);
  }
  const parsed = ImageIndex.safeParse(document);
  if (!parsed.success) throw errors.badRequest(`the index.json of ${where} is not a valid image index: ${parsed.error.issues[0]?.message}`);
  const images: ImportedImage[] = [];
  for (const entry of parsed.data.manifests) {
    const names: string[] = [];
    const tags: string[] = [];
    for (const name of [entry.annotations?.['io.containerd.image.name'], entry.annotations?.['org.opencontainers.image.ref.name']]) {
      if (!name) continue;
      // A bare `ref.name` such as `v1` is a tag without a repository.
      if (/^[\w][\w.-]{0,127}$/.test(name)) tags.push(name);
      else names.push(name);
    }
    images.push({ ...(await resolveImage(entry, ensure, blobs, platform, where)), names: [...new Set(names)], tags: [...new Set(tags)] });
  }
  return images;
}

async function resolveImage(
  entry: Descriptor,
  ensure: BlobEnsurer,
  blobs: BlobStore,
  platform: WantedPlatform,
  where: string,
): Promise<Omit<ImportedImage, 'names' | 'tags'>> {
  await ensure(entry);
  let parsed = parseManifest(await blobs.read(entry.digest), entry.mediaType, `${entry.digest} in ${where}`);
  let digest = entry.digest;
  let mediaType = parsed.mediaType;
  let indexDigest: string | undefined;
  if (parsed.kind === 'index') {
    const chosen = selectPlatform(parsed.index!, platform, `the index ${entry.digest} in ${where}`);
    await ensure(chosen);
    parsed = parseManifest(await blobs.read(chosen.digest), chosen.mediaType, `${chosen.digest} in ${where}`);
    if (parsed.kind !== 'manifest') throw errors.badRequest(`the index ${entry.digest} in ${where} points at another index; nested indexes are not supported`);
    indexDigest = entry.digest;
    digest = chosen.digest;
    mediaType = parsed.mediaType;
  }
  const manifest = parsed.manifest!;
  await ensure(manifest.config);
  for (const layer of manifest.layers) await ensure(layer);
  return { digest, mediaType, ...(indexDigest ? { indexDigest } : {}) };
}

interface StoredFile {
  digest: string;
  size: number;
  head: Buffer;
}

/** Files kept in memory while a tarball streams: the small documents that describe it. */
function isSmallDocument(name: string, header: Header): boolean {
  return (header.size ?? 0) <= MAX_DOCUMENT_BYTES && (name.endsWith('.json') || name === 'oci-layout' || name === 'repositories' || name.endsWith('/VERSION') || name.endsWith('/json'));
}

async function importTarball(path: string, blobs: BlobStore, platform: WantedPlatform): Promise<ImportResult> {
  const head = Buffer.alloc(2);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 2, 0);
  } finally {
    closeSync(fd);
  }
  const gzipped = head[0] === 0x1f && head[1] === 0x8b;
  const documents = new Map<string, Buffer>();
  const stored = new Map<string, StoredFile>();
  const symlinks = new Map<string, string>();
  const storedBlobs = new Set<string>();
  const extract = tarExtract();
  const source = createReadStream(path, { highWaterMark: 1 << 20 });
  const sink = extract as unknown as NodeJS.WritableStream;
  const feeding = (gzipped ? pipeline(source, createGunzip(), sink) : pipeline(source, sink)).then(
    () => undefined,
    (error: unknown) => error ?? new Error('the archive stream failed'),
  );
  let failure: unknown;
  try {
    for await (const raw of extract) {
      const entry = raw as unknown as AsyncIterable<Buffer> & { header: Header };
      const name = posix.normalize(entry.header.name).replace(/^(\.\/)+/, '').replace(/\/$/, '');
      if (entry.header.type === 'symlink' && entry.header.linkname) {
        symlinks.set(name, posix.normalize(posix.join(posix.dirname(name), entry.header.linkname)));
      }
      if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        for await (const _chunk of entry) {
          // Only regular files matter.
        }
        continue;
      }
      const blobName = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
      if (blobName) {
        const digest = `${blobName[1]}:${blobName[2]}`;
        const result = await blobs.putStream(entry, { digest, size: entry.header.size ?? 0 }, path);
        stored.set(name, result);
        storedBlobs.add(digest);
      } else if (isSmallDocument(name, entry.header)) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk);
        documents.set(name, Buffer.concat(chunks));
      } else {
        const result = await blobs.putStream(entry, undefined, path);
        stored.set(name, result);
        storedBlobs.add(result.digest);
      }
    }
  } catch (error) {
    failure = error;
  }
  failure ??= await feeding;
  if (failure) {
    if (!(failure instanceof AltoError)) {
      throw errors.badRequest(`${path} is not a readable ${gzipped ? 'gzip-compressed ' : ''}tar archive: ${(failure as Error).message}`);
    }
    throw failure;
  }

  if (documents.has('index.json') && documents.has('oci-layout')) {
    checkLayoutVersion(documents.get('oci-layout')!, path);
    const ensure: BlobEnsurer = async (descriptor) => {
      if (!blobs.has(descriptor.digest)) throw errors.badRequest(`the OCI archive ${path} lacks the blob ${descriptor.digest}`);
      storedBlobs.add(descriptor.digest);
    };
    // Docker 25+ writes both layouts; the OCI index names the images the same way.
    return { images: await readIndex(documents.get('index.json')!, ensure, blobs, platform, path), storedBlobs };
  }
  const manifestList = documents.get('manifest.json');
  if (!manifestList) {
    throw errors.badRequest(`${path} is neither a docker save tarball (manifest.json) nor an OCI archive (oci-layout, index.json)`);
  }
  let entries: { Config?: string; RepoTags?: string[] | null; Layers?: string[] }[];
  try {
    entries = JSON.parse(manifestList.toString('utf8'));
  } catch (error) {
    throw errors.badRequest(`the manifest.json of ${path} is not JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(entries) || entries.length === 0) throw errors.badRequest(`the manifest.json of ${path} lists no image`);
  const resolveLink = (name: string) => {
    let current = name;
    for (let hops = 0; symlinks.has(current) && hops < 40; hops++) current = symlinks.get(current)!;
    return current;
  };
  const images: ImportedImage[] = [];
  for (const entry of entries) {
    if (!entry.Config || !Array.isArray(entry.Layers)) throw errors.badRequest(`the manifest.json of ${path} has an entry without Config or Layers`);
    const configName = resolveLink(entry.Config);
    const configBytes = documents.get(configName) ?? (stored.has(configName) ? await blobs.read(stored.get(configName)!.digest) : undefined);
    if (!configBytes) throw errors.badRequest(`${path} lacks the image config ${entry.Config}`);
    const configDigest = await blobs.putBuffer(configBytes);
    storedBlobs.add(configDigest);
    const layers = entry.Layers.map((layerName) => {
      const file = stored.get(resolveLink(layerName));
      if (!file) throw errors.badRequest(`${path} lacks the layer ${layerName}`);
      const gzipLayer = file.head[0] === 0x1f && file.head[1] === 0x8b;
      return { mediaType: gzipLayer ? MediaType.ociLayerGzip : MediaType.ociLayer, digest: file.digest, size: file.size };
    });
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBytes.length },
        layers,
      }),
    );
    const digest = await blobs.putBuffer(manifest);
    storedBlobs.add(digest);
    images.push({ digest, mediaType: MediaType.ociManifest, names: entry.RepoTags ?? [], tags: [] });
  }
  return { images, storedBlobs };
}
