/**
 * @module compute/build/image
 * The image a build makes: its config (what the Dockerfile's instructions set, over the base
 * image's own), written with its layers as an OCI image layout and imported into the image store
 * as an image the project built. Layers already in the store are hard-linked into the layout,
 * not copied. The config's time is the epoch, so an unchanged build makes the same digest.
 */
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageDetails, ImageManager } from '../images/manager.js';
import { ImageConfig } from '../images/manifest.js';

/** A layer of the image: its blob (maybe compressed, from the base) and its uncompressed digest. */
export interface BuiltLayer {
  digest: string;
  mediaType: string;
  size: number;
  diffId: string;
}

/** The OCI config's `config` object as a build changes it (Env kept in order, as pairs). */
export interface RunConfig {
  Env: [string, string][];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir: string;
  User: string;
  ExposedPorts: Record<string, object>;
  Volumes: Record<string, object>;
  Labels: Record<string, string>;
  StopSignal?: string;
  Shell?: string[];
  Healthcheck?: Record<string, unknown>;
}

export interface HistoryEntry {
  created_by: string;
  empty_layer?: boolean;
}

export function emptyConfig(): RunConfig {
  return { Env: [], WorkingDir: '', User: '', ExposedPorts: {}, Volumes: {}, Labels: {} };
}

/** Sets an env var, keeping its place when it was set before. */
export function setEnv(config: RunConfig, name: string, value: string): void {
  const existing = config.Env.find(([key]) => key === name);
  if (existing) existing[1] = value;
  else config.Env.push([name, value]);
}

/** The run config and history of a base image, from its config blob. */
export function configOf(bytes: Buffer): { run: RunConfig; history: HistoryEntry[] } {
  const parsed = ImageConfig.parse(JSON.parse(bytes.toString('utf8')));
  const runtime = (parsed.config ?? {}) as Record<string, unknown> & NonNullable<typeof parsed.config>;
  const config = emptyConfig();
  for (const entry of runtime.Env ?? []) {
    const equals = entry.indexOf('=');
    if (equals > 0) setEnv(config, entry.slice(0, equals), entry.slice(equals + 1));
  }
  if (runtime.Entrypoint) config.Entrypoint = runtime.Entrypoint;
  if (runtime.Cmd) config.Cmd = runtime.Cmd;
  config.WorkingDir = runtime.WorkingDir ?? '';
  config.User = runtime.User ?? '';
  config.ExposedPorts = { ...((runtime.ExposedPorts as Record<string, object>) ?? {}) };
  config.Volumes = { ...((runtime.Volumes as Record<string, object>) ?? {}) };
  config.Labels = { ...(runtime.Labels ?? {}) };
  if (runtime.StopSignal) config.StopSignal = runtime.StopSignal;
  if (Array.isArray(runtime.Shell)) config.Shell = runtime.Shell as string[];
  if (runtime.Healthcheck && typeof runtime.Healthcheck === 'object') config.Healthcheck = runtime.Healthcheck as Record<string, unknown>;
  const recorded = (parsed as unknown as { history?: unknown }).history;
  const history = Array.isArray(recorded) ? (recorded as { created_by?: unknown; empty_layer?: unknown }[]) : [];
  return { run: config, history: history.map((entry) => ({ created_by: String(entry.created_by ?? ''), ...(entry.empty_layer ? { empty_layer: true } : {}) })) };
}

/** Writes the image as an OCI layout in `layout` (a new folder) and imports it as `reference`, built by `project`. */
export async function importBuiltImage(
  images: ImageManager,
  layout: string,
  image: { layers: BuiltLayer[]; config: RunConfig; history: HistoryEntry[] },
  names: { reference: string; project: string },
): Promise<BuiltImage> {
  const blobsDir = join(layout, 'blobs', 'sha256');
  mkdirSync(blobsDir, { recursive: true });
  const putBytes = (bytes: Buffer) => {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    writeFileSync(join(blobsDir, digest.slice(7)), bytes);
    return digest;
  };
  for (const layer of image.layers) {
    const target = join(blobsDir, layer.digest.slice(7));
    if (!existsSync(target)) linkSync(images.blobs.pathOf(layer.digest), target);
  }
  const config = image.config;
  const runtime: Record<string, unknown> = {
    Env: config.Env.map(([name, value]) => `${name}=${value}`),
    WorkingDir: config.WorkingDir,
    User: config.User,
    ExposedPorts: config.ExposedPorts,
    Volumes: config.Volumes,
    Labels: config.Labels,
    ...(config.Entrypoint ? { Entrypoint: config.Entrypoint } : {}),
    ...(config.Cmd ? { Cmd: config.Cmd } : {}),
    ...(config.StopSignal ? { StopSignal: config.StopSignal } : {}),
    ...(config.Shell ? { Shell: config.Shell } : {}),
    ...(config.Healthcheck ? { Healthcheck: config.Healthcheck } : {}),
  };
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: new Date(0).toISOString(),
      config: runtime,
      rootfs: { type: 'layers', diff_ids: image.layers.map((layer) => layer.diffId) },
      history: image.history,
    }),
  );
  const configDigest = putBytes(configBytes);
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: configBytes.length },
      layers: image.layers.map((layer) => ({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })),
    }),
  );
  const manifestDigest = putBytes(manifestBytes);
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifestBytes.length }],
    }),
  );
  const [imported] = await images.import(layout, { reference: names.reference, builtBy: names.project });
  return {
    image: imported,
    manifest: manifestBytes,
    blobs: [{ digest: configDigest, size: configBytes.length }, ...image.layers.map((layer) => ({ digest: layer.digest, size: layer.size }))],
  };
}

/** An image built and imported: its details, its manifest as written, and the blobs that manifest names. */
export interface BuiltImage {
  image: ImageDetails;
  manifest: Buffer;
  blobs: { digest: string; size: number }[];
}
