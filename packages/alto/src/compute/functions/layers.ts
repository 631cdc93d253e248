/**
 * @module compute/functions/layers
 * Image layers and OCI layouts written by Alto itself, with no Docker and no registry: a layer is
 * an uncompressed tar (the image store takes `application/vnd.oci.image.layer.v1.tar`; skipping
 * gzip keeps a 100 MB runtime layer quick to write) hashed as it is written, and a layout is the
 * folder `ImageManager.import` reads (`oci-layout`, `index.json`, `blobs/sha256/...`). Big layers
 * are hard-linked into the layout, not copied.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, linkSync, copyFileSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pack } from 'tar-stream';

/** One entry of a layer. Paths are relative to the image root, folders end with `/`. */
export type LayerFile =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; content: Buffer | string; mode?: number }
  | { type: 'symlink'; path: string; target: string };

/** A layer tar on disk: its digest is also its diff id, since it is not compressed. */
export interface LayerBlob {
  path: string;
  digest: string;
  size: number;
}

export const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar';

/** Writes `files` as a tar at `path` (through a temporary name, so a reader never sees half of it). */
export async function writeLayer(path: string, files: LayerFile[]): Promise<LayerBlob> {
  const temporary = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  const hash = createHash('sha256');
  let size = 0;
  const archive = pack();
  const output = createWriteStream(temporary);
  archive.on('data', (chunk) => {
    if (!Buffer.isBuffer(chunk)) return;
    hash.update(chunk);
    size += chunk.length;
  });
  const written = new Promise<void>((resolve, reject) => {
    output.on('finish', resolve);
    output.on('error', reject);
    archive.on('error', reject);
  });
  archive.pipe(output);
  // A fixed time, so the same files make the same layer (and so the same image digest).
  const mtime = new Date(0);
  for (const file of files) {
    if (file.type === 'dir') archive.entry({ name: file.path, type: 'directory', mode: file.mode ?? 0o755, mtime });
    else if (file.type === 'symlink') archive.entry({ name: file.path, type: 'symlink', linkname: file.target, mtime });
    else {
      const content = typeof file.content === 'string' ? Buffer.from(file.content) : file.content;
      await new Promise<void>((resolve, reject) =>
        archive.entry({ name: file.path, type: 'file', mode: file.mode ?? 0o644, size: content.length, mtime }, content, (error) => (error ? reject(error) : resolve())),
      );
    }
  }
  archive.finalize();
  try {
    await written;
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
  return { path, digest: `sha256:${hash.digest('hex')}`, size };
}

/** Folder entries for every parent of the given paths, parents first. */
export function parentFolders(paths: string[]): LayerFile[] {
  const folders = new Set<string>();
  for (const path of paths) {
    const parts = path.replace(/\/$/, '').split('/');
    const count = path.endsWith('/') ? parts.length : parts.length - 1;
    for (let index = 1; index <= count; index++) folders.add(parts.slice(0, index).join('/') + '/');
  }
  return [...folders].sort().map((path) => ({ type: 'dir', path }));
}

/** What the image config says about running it (the OCI config's `config` object). */
export interface RunConfig {
  Env: string[];
  Entrypoint: string[];
  Cmd: string[];
  WorkingDir: string;
  ExposedPorts: Record<string, object>;
  Labels?: Record<string, string>;
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * Writes an OCI image layout at `dir` (which must not exist) holding one image made of `layers`
 * (bottom first) and `config`; returns the manifest digest.
 */
export function writeImageLayout(dir: string, layers: LayerBlob[], config: RunConfig): string {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const putBytes = (bytes: Buffer): string => {
    const digest = sha256(bytes);
    writeFileSync(join(blobs, digest.slice('sha256:'.length)), bytes);
    return digest;
  };
  for (const layer of layers) {
    const target = join(blobs, layer.digest.slice('sha256:'.length));
    try {
      linkSync(layer.path, target);
    } catch {
      copyFileSync(layer.path, target);
    }
  }
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config,
      rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.digest) },
      history: layers.map(() => ({ created_by: 'alto functions' })),
    }),
  );
  const configDigest = putBytes(configBytes);
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: configBytes.length },
      layers: layers.map((layer) => ({ mediaType: LAYER_MEDIA_TYPE, digest: layer.digest, size: layer.size })),
    }),
  );
  const manifestDigest = putBytes(manifestBytes);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifestBytes.length }],
    }),
  );
  return manifestDigest;
}

