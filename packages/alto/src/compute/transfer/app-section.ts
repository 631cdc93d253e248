/**
 * @module compute/transfer/app-section
 * The apps' section of a project archive (code): per environment and app, its definition
 * (`app/<env>/<name>/app.json`; archives of Alto before environments moved with them have
 * `app/<name>/app.json`, the default environment's): the image reference, and the settings
 * app/Run takes (port, env vars, resources, scaling, volumes' mounts, TCP, links, health check,
 * the names of its secrets...);
 * and its image's blobs (manifest, config, layers), each once per archive whatever the apps
 * sharing it (`app/blobs/<sha256 hex>`), streamed from the image store. Functions' apps are left
 * to the functions' section.
 *
 * The import keeps the blobs in a temporary OCI layout in the data folder (each checked against
 * its digest), imports each app's image from it under its reference, for the new project, and
 * deploys the app through app/Run in its environment (the one the import maps it to) once every
 * other entry is in (its secrets and data first). The
 * Run sees the image on the machine: one the target can pull again is pulled (a moved tag), one it
 * cannot (a registry it does not reach, the source's own registry) runs from the carried copy. The
 * Run answers once the app's first instances are ready, so an import that returns has apps that
 * answer. An app whose image is not on the source machine goes by its reference alone.
 *
 * Not carried: volume contents (the volumes start empty), custom domains (they point at the
 * source), logs.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errors, isAltoError } from '../../kit/errors.js';
import type { ArchiveWriter } from '../../platform/transfer/archive.js';
import type { ProjectSection, SectionImport } from '../../platform/transfer/section.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import { RUN_SETTINGS as APP_RUN_SETTINGS } from '../apps/run-settings.js';
import type { ImageDetails, ImageManager } from '../images/manager.js';
import { imagesComponent } from '../images/service.js';

/** What app/List shows of an app that app/Run takes back, with the stack it is a service of. */
const RUN_SETTINGS = [...APP_RUN_SETTINGS, 'stack'] as const;
const HEX = /^[0-9a-f]{64}$/;

interface AppDefinition {
  name: string;
  /** The environment it runs in on the target (read from the entry's path, mapped as the import was asked). */
  environment?: string;
  image: string;
  digest: string;
  /** The image's manifest and every blob it names, carried under `app/blobs/`; absent when the source did not hold the image. */
  carried?: { mediaType: string; size: number; blobs: string[] };
  settings: Record<string, unknown>;
}

interface ImportState {
  apps: AppDefinition[];
  /** The temporary OCI layout the carried blobs are written into. */
  layout: string;
  blobs: Set<string>;
}

const states = new WeakMap<object, ImportState>();

function stateOf(context: SectionImport): ImportState {
  let state = states.get(context);
  if (!state) {
    state = { apps: [], layout: join(context.platform.config.dataDir, 'transfer', `layout-${context.project.id}`), blobs: new Set() };
    states.set(context, state);
  }
  return state;
}

export const appSection: ProjectSection = {
  name: 'app',
  kind: 'code',
  async environments({ platform, project }) {
    return [...new Set((await platform.stores.apps.listOfProject(project.id)).map((app) => app.environment))];
  },
  async export({ platform, project, archive, call, environments }) {
    const images = platform.use(imagesComponent);
    const written = new Set<string>();
    for (const environment of environments) {
      const functions = new Set((await platform.stores.functions.listOfProject(project.id, environment)).map((record) => record.name));
      const { services } = await call<{ services: Array<Record<string, unknown> & { name: string; image: string; digest: string }> }>('app', 'List', environment, {});
      for (const service of services) {
        if (functions.has(service.name)) continue;
        await exportApp(archive, images, written, environment, service);
      }
    }
  },
  async importEntry(context, entry) {
    const parts = entry.name.split('/');
    const state = stateOf(context);
    if (parts.length === 2 && parts[0] === 'blobs' && parts[1] !== 'app.json') {
      if (!HEX.test(parts[1])) throw errors.badRequest('an image blob is not named by its sha256');
      await writeBlob(state, parts[1], entry.body);
      return;
    }
    // `<env>/<name>/app.json`, or `<name>/app.json` (the default environment's) from an older Alto.
    const [environment, name] = parts.length === 3 ? [parts[0], parts[1]] : [DEFAULT_ENVIRONMENT, parts[0]];
    if ((parts.length !== 2 && parts.length !== 3) || parts[parts.length - 1] !== 'app.json') return context.warn(`app: the entry ${entry.name} is not known to this Alto and was left out`);
    const definition = await entry.json<AppDefinition>();
    if (definition.name !== name || typeof definition.image !== 'string' || typeof definition.settings !== 'object' || definition.settings === null) {
      throw errors.badRequest(`app ${name}: its definition is not one Alto writes`);
    }
    state.apps.push({ ...definition, environment: context.environmentOf(environment) });
  },
  async finishImport(context) {
    const state = stateOf(context);
    try {
      for (const app of state.apps) {
        if (app.carried) await importImage(context, state, app);
        await runApp(context, app);
      }
    } finally {
      await rm(state.layout, { recursive: true, force: true });
    }
  },
  async abortImport(context) {
    await rm(stateOf(context).layout, { recursive: true, force: true });
  },
};

/** Writes one app's definition, and its image's blobs not yet in the archive. */
async function exportApp(
  archive: ArchiveWriter,
  images: ImageManager,
  written: Set<string>,
  environment: string,
  service: Record<string, unknown> & { name: string; image: string; digest: string },
): Promise<void> {
  const settings: Record<string, unknown> = {};
  for (const name of RUN_SETTINGS) {
    const value = service[name];
    if (value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0)) settings[name] = value;
  }
  let carried: AppDefinition['carried'];
  const details = imageDetails(images, service.digest);
  if (details) {
    const blobs = [details.digest, ...details.blobs.map((blob) => blob.digest)].map((digest) => digest.replace(/^sha256:/, ''));
    for (const hex of new Set(blobs)) {
      if (written.has(hex)) continue;
      const digest = `sha256:${hex}`;
      const size = images.blobs.sizeOf(digest);
      if (size === undefined) throw errors.internal(`the blob ${digest} of app ${service.name}'s image is missing from this machine`);
      await archive.stream('app', `blobs/${hex}`, size, images.blobs.openRead(digest), 0);
      written.add(hex);
    }
    carried = { mediaType: details.mediaType, size: images.blobs.sizeOf(details.digest) ?? 0, blobs: [...new Set(blobs)] };
  }
  const definition: AppDefinition = { name: service.name, image: service.image, digest: service.digest, ...(carried ? { carried } : {}), settings };
  await archive.json('app', `${environment}/${service.name}/app.json`, definition, 1);
}

function imageDetails(images: ImageManager, digest: string): ImageDetails | undefined {
  if (!digest) return undefined;
  try {
    return images.inspect(digest);
  } catch (error) {
    if (isAltoError(error) && error.status === 404) return undefined;
    throw error;
  }
}

/** Writes a carried blob into the temporary layout, refusing content that is not the digest it is named by. */
async function writeBlob(state: ImportState, hex: string, body: NodeJS.ReadableStream): Promise<void> {
  const folder = join(state.layout, 'blobs', 'sha256');
  await mkdir(folder, { recursive: true, mode: 0o700 });
  const hash = createHash('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  await pipeline(body, hashing, createWriteStream(join(folder, hex), { mode: 0o600 }));
  if (hash.digest('hex') !== hex) throw errors.badRequest(`the image blob ${hex} does not match its digest: the archive was altered`);
  state.blobs.add(hex);
}

/** Imports an app's carried image from the layout under its reference, for the new project. */
async function importImage(context: SectionImport, state: ImportState, app: AppDefinition): Promise<void> {
  const carried = app.carried!;
  const manifest = carried.blobs[0];
  if (!carried.blobs.every((hex) => HEX.test(hex) && state.blobs.has(hex))) throw errors.badRequest(`app ${app.name}: the archive lacks blobs of its image`);
  const index = {
    schemaVersion: 2,
    manifests: [{ mediaType: String(carried.mediaType), digest: `sha256:${manifest}`, size: Number(carried.size), annotations: { 'org.opencontainers.image.ref.name': app.image } }],
  };
  await writeFile(join(state.layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(state.layout, 'index.json'), JSON.stringify(index));
  await context.platform.use(imagesComponent).import(state.layout, { reference: app.image, builtBy: context.project.id });
}

async function runApp(context: SectionImport, app: AppDefinition): Promise<void> {
  const settings: Record<string, unknown> = {};
  for (const name of RUN_SETTINGS) if (name in app.settings) settings[name] = app.settings[name];
  if (context.header.only === 'code' && Array.isArray(settings.secrets)) {
    // The secrets stayed behind with the data: the app runs without them until they are set and named again (app/Update).
    context.warn(`app ${app.name}: runs without its secrets (${settings.secrets.join(', ')}): the archive holds code only; set them and name them with app Update`);
    delete settings.secrets;
  }
  if (context.header.only === 'code' && Array.isArray(settings.secret_files)) {
    const targets = (settings.secret_files as { target: string }[]).map((file) => `/run/secrets/${file.target}`);
    context.warn(`app ${app.name}: runs without its secret files (${targets.join(', ')}): the archive holds code only; set the secrets and name them with app Update`);
    delete settings.secret_files;
  }
  const environment = app.environment ?? DEFAULT_ENVIRONMENT;
  const where = environment === DEFAULT_ENVIRONMENT ? app.name : `${app.name} (${environment})`;
  if (settings.volumes) context.warn(`app ${where}: its volumes are mounted again, empty: their contents are not in a project archive (alto backup copies them)`);
  await context.call('app', 'Run', environment, { name: app.name, image: app.image, ...settings });
}
