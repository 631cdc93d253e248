/**
 * Test images, made by the tests: small real OCI and Docker v2 images built in code (Debian's
 * busybox-static plus files that exercise whiteouts, opaque directories, hard links, symlinks,
 * modes and owners), written as OCI layouts and `docker save` tarballs, and pushed over the
 * distribution API to a real `docker-registry` (the CNCF distribution server) started on a free
 * loopback port with its own config and storage folder: open, behind token auth (a certificate
 * made with openssl and a small token issuer here) or behind basic auth (htpasswd, bcrypt).
 * Also a loopback proxy that cuts a transfer, redirects blobs to a "storage" server and counts
 * what was fetched.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, sign } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack as tarPack, type Header } from 'tar-stream';

// ---------------------------------------------------------------------------------------------
// Layers and images
// ---------------------------------------------------------------------------------------------

export type LayerEntry =
  | { type: 'file'; path: string; content?: string | Buffer; mode?: number; uid?: number; gid?: number; mtime?: Date }
  | { type: 'dir'; path: string; mode?: number; uid?: number; gid?: number; mtime?: Date }
  | { type: 'symlink'; path: string; target: string; uid?: number; gid?: number }
  | { type: 'link'; path: string; target: string }
  | { type: 'char-device' | 'block-device' | 'fifo'; path: string; major?: number; minor?: number }
  | { type: 'whiteout'; path: string }
  | { type: 'opaque'; path: string };

/** A fixed time, so layers are byte-for-byte reproducible. */
export const FIXED_MTIME = new Date('2024-01-02T03:04:05Z');

/** Builds an uncompressed tar from entries, in the order given. */
export async function buildTar(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  const add = (header: Header, content?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      pack.entry(header, content ?? Buffer.alloc(0), (error) => (error ? reject(error) : resolve()));
    });
  for (const entry of entries) {
    const base = { name: entry.path, mtime: FIXED_MTIME, uid: 0, gid: 0 } as Header;
    switch (entry.type) {
      case 'file': {
        const content = typeof entry.content === 'string' ? Buffer.from(entry.content) : (entry.content ?? Buffer.alloc(0));
        await add({ ...base, type: 'file', mode: entry.mode ?? 0o644, uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime: entry.mtime ?? FIXED_MTIME, size: content.length }, content);
        break;
      }
      case 'dir':
        await add({ ...base, type: 'directory', mode: entry.mode ?? 0o755, uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime: entry.mtime ?? FIXED_MTIME });
        break;
      case 'symlink':
        await add({ ...base, type: 'symlink', linkname: entry.target, mode: 0o777, uid: entry.uid ?? 0, gid: entry.gid ?? 0 });
        break;
      case 'link':
        await add({ ...base, type: 'link', linkname: entry.target, mode: 0o644 });
        break;
      case 'char-device':
      case 'block-device':
      case 'fifo':
        await add({ ...base, type: entry.type === 'char-device' ? 'character-device' : entry.type, mode: 0o666, devmajor: entry.major ?? 1, devminor: entry.minor ?? 3 });
        break;
      case 'whiteout': {
        const slash = entry.path.lastIndexOf('/');
        await add({ ...base, type: 'file', mode: 0o644, name: `${entry.path.slice(0, slash + 1)}.wh.${entry.path.slice(slash + 1)}` });
        break;
      }
      case 'opaque':
        await add({ ...base, type: 'file', mode: 0o644, name: `${entry.path.replace(/\/$/, '')}/.wh..wh..opq` });
        break;
    }
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export interface BuiltBlob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export interface BuiltLayer extends BuiltBlob {
  /** Digest of the uncompressed tar. */
  diffId: string;
  tar: Buffer;
}

export interface BuiltImage {
  format: 'oci' | 'docker';
  manifest: BuiltBlob;
  config: BuiltBlob;
  layers: BuiltLayer[];
}

export interface BuiltIndex {
  index: BuiltBlob;
  images: BuiltImage[];
}

export interface ImageOptions {
  format?: 'oci' | 'docker';
  /** Layers as entries; each gzip-compressed unless `uncompressed` lists its position. */
  layers: LayerEntry[][];
  uncompressed?: number[];
  architecture?: string;
  config?: Record<string, unknown>;
}

export const OCI = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
};
export const DOCKER = {
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  list: 'application/vnd.docker.distribution.manifest.list.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  /** Not in Docker's own spec, but what tools write for an uncompressed Docker layer. */
  layer: 'application/vnd.docker.image.rootfs.diff.tar',
};

function blob(mediaType: string, bytes: Buffer): BuiltBlob {
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
}

export async function buildImage(options: ImageOptions): Promise<BuiltImage> {
  const format = options.format ?? 'oci';
  const layers: BuiltLayer[] = [];
  for (const [position, entries] of options.layers.entries()) {
    const tar = await buildTar(entries);
    const compressed = !options.uncompressed?.includes(position);
    const mediaType = compressed ? (format === 'oci' ? OCI.layerGzip : DOCKER.layerGzip) : format === 'oci' ? OCI.layer : DOCKER.layer;
    const bytes = compressed ? gzipSync(tar, { level: 1 }) : tar;
    layers.push({ ...blob(mediaType, bytes), diffId: sha256(tar), tar });
  }
  const config = {
    architecture: options.architecture ?? 'amd64',
    os: 'linux',
    created: '2024-01-02T03:04:05Z',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'], ...options.config },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    history: layers.map(() => ({ created: '2024-01-02T03:04:05Z', created_by: 'alto test fixture' })),
  };
  const configBlob = blob(format === 'oci' ? OCI.config : DOCKER.config, Buffer.from(JSON.stringify(config)));
  const manifest = {
    schemaVersion: 2,
    mediaType: format === 'oci' ? OCI.manifest : DOCKER.manifest,
    config: { mediaType: configBlob.mediaType, digest: configBlob.digest, size: configBlob.size },
    layers: layers.map((layer) => ({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })),
  };
  return { format, manifest: blob(manifest.mediaType, Buffer.from(JSON.stringify(manifest))), config: configBlob, layers };
}

export function buildIndex(images: { image: BuiltImage; architecture: string; variant?: string }[], format: 'oci' | 'docker' = 'oci'): BuiltIndex {
  const index = {
    schemaVersion: 2,
    mediaType: format === 'oci' ? OCI.index : DOCKER.list,
    manifests: images.map(({ image, architecture, variant }) => ({
      mediaType: image.manifest.mediaType,
      digest: image.manifest.digest,
      size: image.manifest.size,
      platform: { architecture, os: 'linux', ...(variant ? { variant } : {}) },
    })),
  };
  return { index: blob(index.mediaType, Buffer.from(JSON.stringify(index))), images: images.map((entry) => entry.image) };
}

/** Debian's statically linked busybox, the one real program in the test images. */
export function busyboxBinary(): Buffer {
  for (const path of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(path)) return readFileSync(path);
  throw new Error('busybox-static is not installed: apt-get install busybox-static (scripts/test-services.sh does)');
}

/** A base layer: busybox with a few applet links, /etc files and an owned, set-uid file. */
export function busyboxBaseLayer(): LayerEntry[] {
  return [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'symlink', path: 'bin/ls', target: '/bin/busybox' },
    { type: 'link', path: 'bin/cat', target: 'bin/busybox' },
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' },
    { type: 'file', path: 'etc/secret', content: 'only the owner reads this\n', mode: 0o600, uid: 1000, gid: 1000 },
    { type: 'file', path: 'etc/removed-later', content: 'a whiteout in layer 2 deletes me\n' },
    { type: 'dir', path: 'var/' },
    { type: 'dir', path: 'var/cache/' },
    { type: 'file', path: 'var/cache/old-1', content: 'opaque dir in layer 2 hides me\n' },
    { type: 'file', path: 'var/cache/old-2', content: 'me too\n' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
    { type: 'file', path: 'usr/local/bin/suid-tool', content: '#!/bin/sh\necho hi\n', mode: 0o4755 },
    { type: 'char-device', path: 'dev/null', major: 1, minor: 3 },
    { type: 'fifo', path: 'run/pipe' },
  ];
}

/** A second layer: a whiteout, an opaque directory, new files, a replaced file, a hard link. */
export function changesLayer(): LayerEntry[] {
  return [
    { type: 'whiteout', path: 'etc/removed-later' },
    { type: 'dir', path: 'var/cache/' },
    { type: 'opaque', path: 'var/cache/' },
    { type: 'file', path: 'var/cache/new', content: 'written by layer 2\n' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n', mode: 0o644 },
    { type: 'dir', path: 'app/', mode: 0o750, uid: 1000, gid: 1000 },
    { type: 'file', path: 'app/run.sh', content: '#!/bin/sh\nexec /bin/busybox httpd -f -p 8080\n', mode: 0o755, uid: 1000, gid: 1000 },
    { type: 'link', path: 'app/run-link.sh', target: 'app/run.sh' },
    { type: 'symlink', path: 'app/config', target: '../etc/passwd' },
  ];
}

/** What `busyboxBaseLayer` + `changesLayer` unpack to: path -> [kind, mode, detail]. */
export const EXPECTED_TREE: Record<string, string> = {
  'app': 'dir 750',
  'app/config': 'symlink -> ../etc/passwd',
  'app/run-link.sh': 'file 755 hardlink-of:app/run-link.sh',
  'app/run.sh': 'file 755 hardlink-of:app/run-link.sh',
  'bin': 'dir 755',
  'bin/busybox': 'file 755 hardlink-of:bin/busybox',
  'bin/cat': 'file 755 hardlink-of:bin/busybox',
  'bin/ls': 'symlink -> /bin/busybox',
  'bin/sh': 'symlink -> busybox',
  'etc': 'dir 755',
  'etc/passwd': 'file 644',
  'etc/secret': 'file 600',
  'tmp': 'dir 1777',
  'usr': 'dir 755',
  'usr/local': 'dir 755',
  'usr/local/bin': 'dir 755',
  'usr/local/bin/suid-tool': 'file 4755',
  'var': 'dir 755',
  'var/cache': 'dir 755',
  'var/cache/new': 'file 644',
  // No dev/null nor run/pipe: devices and FIFOs are skipped (and so their implied parents).
};

/** Describes a tree the way EXPECTED_TREE does, hard links by their first name in sort order. */
export function describeTree(root: string): Record<string, string> {
  const result: Record<string, string> = {};
  const inodes = new Map<number, string[]>();
  const walk = (relative: string) => {
    const absolute = relative ? join(root, relative) : root;
    for (const name of readdirSync(absolute).sort()) {
      const path = relative ? `${relative}/${name}` : name;
      const info = lstatSync(join(root, path));
      if (info.isSymbolicLink()) result[path] = `symlink -> ${readlinkSync(join(root, path))}`;
      else if (info.isDirectory()) {
        result[path] = `dir ${(info.mode & 0o7777).toString(8)}`;
        walk(path);
      } else if (info.isFile()) {
        result[path] = `file ${(info.mode & 0o7777).toString(8)}`;
        if (info.nlink > 1) inodes.set(info.ino, [...(inodes.get(info.ino) ?? []), path]);
      } else result[path] = 'other';
    }
  };
  walk('');
  for (const paths of inodes.values()) {
    const first = [...paths].sort()[0];
    for (const path of paths) result[path] += ` hardlink-of:${first}`;
  }
  return result;
}


// ---------------------------------------------------------------------------------------------
// OCI layouts and docker save tarballs
// ---------------------------------------------------------------------------------------------

function blobsOf(image: BuiltImage): BuiltBlob[] {
  return [image.manifest, image.config, ...image.layers];
}

/** Writes an OCI image layout folder holding the images, each named by `ref.name`. */
export function writeOciLayout(dir: string, images: { image: BuiltImage | BuiltIndex; refName?: string }[]): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const manifests: unknown[] = [];
  for (const { image, refName } of images) {
    const top = 'index' in image ? image.index : image.manifest;
    const all = 'index' in image ? [image.index, ...image.images.flatMap(blobsOf)] : blobsOf(image);
    for (const entry of all) writeFileSync(join(dir, 'blobs', 'sha256', entry.digest.slice('sha256:'.length)), entry.bytes);
    manifests.push({
      mediaType: top.mediaType,
      digest: top.digest,
      size: top.size,
      ...(refName ? { annotations: { 'org.opencontainers.image.ref.name': refName } } : {}),
    });
  }
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests }));
}

/** Writes a tarball the way `docker save` (before Docker 25) does: uncompressed layer.tar files. */
export async function writeDockerSave(path: string, image: BuiltImage, repoTags: string[]): Promise<void> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  const add = (name: string, content: Buffer | string, type: Header['type'] = 'file', linkname?: string) =>
    new Promise<void>((resolve, reject) =>
      pack.entry({ name, type, mode: type === 'directory' ? 0o755 : 0o644, mtime: FIXED_MTIME, ...(linkname ? { linkname } : {}) }, Buffer.from(content), (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  const configName = `${image.config.digest.slice('sha256:'.length)}.json`;
  const layerNames: string[] = [];
  const seen = new Map<string, string>();
  for (const layer of image.layers) {
    const id = createHash('sha256').update(layer.diffId + layerNames.length).digest('hex');
    const name = `${id}/layer.tar`;
    await add(`${id}/`, '', 'directory');
    await add(`${id}/VERSION`, '1.0');
    await add(`${id}/json`, JSON.stringify({ id }));
    const duplicate = seen.get(layer.diffId);
    // docker save writes a repeated layer as a symlink to the first copy.
    if (duplicate) await add(name, '', 'symlink', `../${duplicate}`);
    else await add(name, layer.tar);
    seen.set(layer.diffId, name);
    layerNames.push(name);
  }
  await add(configName, image.config.bytes);
  await add('manifest.json', JSON.stringify([{ Config: configName, RepoTags: repoTags, Layers: layerNames }]));
  pack.finalize();
  await collected;
  writeFileSync(path, Buffer.concat(chunks));
}

// ---------------------------------------------------------------------------------------------
// A real registry
// ---------------------------------------------------------------------------------------------

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls an async condition (for processes that tell nothing when ready) until it holds. */
export async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export interface TestRegistry {
  /** `127.0.0.1:port`, as it appears in image references. */
  host: string;
  storage: string;
  /** Users of a token or basic-auth registry (name -> password). */
  users: Record<string, string>;
  tokenIssuer?: TokenIssuer;
  push(repository: string, tag: string, image: BuiltImage | BuiltIndex): Promise<void>;
  /** Where the registry keeps a blob's bytes on disk. */
  blobPath(digest: string): string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  auth?: 'token' | 'basic';
  /** Token registry: repositories anyone may pull without credentials. */
  publicRepositories?: string[];
}

const ADMIN = { username: 'pusher', password: 'push-secret' };

export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'alto-registry-'));
  const storage = join(dir, 'storage');
  mkdirSync(storage);
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const users: Record<string, string> = { [ADMIN.username]: ADMIN.password, reader: 'reader-secret' };
  let tokenIssuer: TokenIssuer | undefined;
  let auth = '';
  if (options.auth === 'token') {
    tokenIssuer = await startTokenIssuer({ dir, users, publicRepositories: options.publicRepositories ?? [] });
    auth = `auth:
  token:
    realm: ${tokenIssuer.url}/token
    service: alto-test-registry
    issuer: alto-test-issuer
    rootcertbundle: ${tokenIssuer.certificatePath}
`;
  } else if (options.auth === 'basic') {
    // bcrypt, which is all docker-registry's htpasswd accepts: from apache2-utils' htpasswd.
    const lines = Object.entries(users).map(([user, password]) => execFileSync('htpasswd', ['-nbB', user, password], { encoding: 'utf8' }).trim());
    writeFileSync(join(dir, 'htpasswd'), lines.join('\n') + '\n');
    auth = `auth:
  htpasswd:
    realm: alto-test
    path: ${join(dir, 'htpasswd')}
`;
  }
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${host}
  secret: alto-test-secret
${auth}`,
  );
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      const response = await fetch(`http://${host}/v2/`);
      await response.arrayBuffer();
      return response.status === 200 || response.status === 401;
    }, `docker-registry on ${host}`);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}\n${stderr}`);
  }
  const pusher = new DistributionPusher(host, options.auth ? ADMIN : undefined);
  return {
    host,
    storage,
    users,
    tokenIssuer,
    push: (repository, tag, image) => pusher.push(repository, tag, image),
    blobPath: (digest) => {
      const hex = digest.slice('sha256:'.length);
      return join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      await tokenIssuer?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Pushes images over the distribution API: blobs (monolithic upload), then manifests. */
class DistributionPusher {
  private authorization?: string;

  constructor(
    private readonly host: string,
    private readonly credentials?: { username: string; password: string },
  ) {}

  private async request(method: string, path: string, init: { headers?: Record<string, string>; body?: Buffer } = {}): Promise<Response> {
    const url = path.startsWith('http') ? path : `http://${this.host}${path}`;
    const send = () =>
      fetch(url, {
        method,
        headers: { ...init.headers, ...(this.authorization ? { authorization: this.authorization } : {}) },
        body: init.body ? new Uint8Array(init.body) : undefined,
        redirect: 'manual',
      });
    let response = await send();
    if (response.status === 401 && this.credentials) {
      await response.arrayBuffer();
      const challenge = response.headers.get('www-authenticate') ?? '';
      const basic = `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}`;
      if (/^Bearer/i.test(challenge)) {
        const realm = /realm="([^"]+)"/.exec(challenge)![1];
        const service = /service="([^"]+)"/.exec(challenge)![1];
        const scope = /scope="([^"]+)"/.exec(challenge)?.[1];
        const tokenUrl = new URL(realm);
        tokenUrl.searchParams.set('service', service);
        // Ask for push as well as pull on the repository the challenge named.
        if (scope) tokenUrl.searchParams.set('scope', scope.replace(/:pull$/, ':pull,push'));
        const token = (await (await fetch(tokenUrl, { headers: { authorization: basic } })).json()) as { token: string };
        this.authorization = `Bearer ${token.token}`;
      } else {
        this.authorization = basic;
      }
      response = await send();
    }
    return response;
  }

  private async pushBlob(repository: string, entry: BuiltBlob): Promise<void> {
    const head = await this.request('HEAD', `/v2/${repository}/blobs/${entry.digest}`);
    if (head.status === 200) return;
    // Token scopes are per action: get a push token before the upload.
    this.authorization = undefined;
    const started = await this.request('POST', `/v2/${repository}/blobs/uploads/`);
    await started.arrayBuffer();
    if (started.status !== 202) throw new Error(`starting an upload of ${entry.digest}: ${started.status}`);
    const location = new URL(started.headers.get('location')!, `http://${this.host}`);
    location.searchParams.set('digest', entry.digest);
    const finished = await this.request('PUT', location.toString(), { headers: { 'content-type': 'application/octet-stream' }, body: entry.bytes });
    const text = await finished.text();
    if (finished.status !== 201) throw new Error(`uploading ${entry.digest}: ${finished.status} ${text}`);
  }

  private async pushManifest(repository: string, reference: string, manifest: BuiltBlob): Promise<void> {
    const response = await this.request('PUT', `/v2/${repository}/manifests/${reference}`, {
      headers: { 'content-type': manifest.mediaType },
      body: manifest.bytes,
    });
    const text = await response.text();
    if (response.status !== 201) throw new Error(`pushing manifest ${repository}:${reference}: ${response.status} ${text}`);
  }

  async push(repository: string, tag: string, image: BuiltImage | BuiltIndex): Promise<void> {
    const images = 'index' in image ? image.images : [image];
    for (const one of images) {
      for (const entry of [one.config, ...one.layers]) await this.pushBlob(repository, entry);
      // An index's manifests are pushed by digest; a single image by its tag.
      await this.pushManifest(repository, 'index' in image ? one.manifest.digest : tag, one.manifest);
    }
    if ('index' in image) await this.pushManifest(repository, tag, image.index);
  }
}

// ---------------------------------------------------------------------------------------------
// A token issuer for docker-registry's `auth: token`
// ---------------------------------------------------------------------------------------------

export interface TokenIssuer {
  url: string;
  certificatePath: string;
  /** Every token request: the scope asked and the user it came from (undefined: anonymous). */
  requests: { scope: string; user?: string }[];
  stop(): Promise<void>;
}

async function startTokenIssuer(options: { dir: string; users: Record<string, string>; publicRepositories: string[] }): Promise<TokenIssuer> {
  const keyPath = join(options.dir, 'token-key.pem');
  const certificatePath = join(options.dir, 'token-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=alto-test-issuer', '-days', '2', '-keyout', keyPath, '-out', certificatePath], {
    stdio: 'ignore',
  });
  const privateKey = readFileSync(keyPath, 'utf8');
  const certificateDer = readFileSync(certificatePath, 'utf8')
    .replace(/-----(BEGIN|END) CERTIFICATE-----/g, '')
    .replace(/\s+/g, '');
  const requests: TokenIssuer['requests'] = [];
  const base64url = (value: Buffer | string) => Buffer.from(value).toString('base64url');
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://issuer');
    let user: string | undefined;
    const header = request.headers.authorization;
    if (header?.startsWith('Basic ')) {
      const [name, ...rest] = Buffer.from(header.slice(6), 'base64').toString('utf8').split(':');
      if (options.users[name] !== rest.join(':')) {
        response.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"wrong credentials"}');
        return;
      }
      user = name;
    }
    const access: { type: string; name: string; actions: string[] }[] = [];
    for (const scope of url.searchParams.getAll('scope')) {
      requests.push({ scope, user });
      const [type, name, actions] = scope.split(':');
      const wanted = (actions ?? '').split(',').filter(Boolean);
      const granted = user === ADMIN.username ? wanted : user ? wanted.filter((action) => action === 'pull') : options.publicRepositories.includes(name) ? wanted.filter((action) => action === 'pull') : [];
      access.push({ type, name, actions: granted });
    }
    if (url.searchParams.getAll('scope').length === 0) requests.push({ scope: '', user });
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: 'alto-test-issuer',
      sub: user ?? '',
      aud: url.searchParams.get('service') ?? '',
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const signingInput = `${base64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certificateDer] }))}.${base64url(JSON.stringify(claims))}`;
    const token = `${signingInput}.${base64url(sign('sha256', Buffer.from(signingInput), privateKey))}`;
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    certificatePath,
    requests,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// ---------------------------------------------------------------------------------------------
// A loopback proxy in front of a registry: cuts transfers, redirects to storage, counts
// ---------------------------------------------------------------------------------------------

export interface ProxyOptions {
  /** Cut the first response of each blob after this many body bytes (a dropped connection). */
  cutFirstBlobTransferAfter?: number;
  /**
   * Answer blob requests with a 307 to a separate "storage" server that reads the registry's
   * storage folder (as a registry on S3 redirects to a signed URL).
   */
  redirectBlobsTo?: TestRegistry;
}

export interface TestProxy {
  host: string;
  /** Blob GETs that reached the proxy, per digest. */
  blobRequests: Map<string, number>;
  /** `Range` headers of blob requests, in order. */
  ranges: string[];
  /** Authorization headers the storage server received (must be none). */
  storageAuthorizations: (string | undefined)[];
  storageRequests: number;
  close(): Promise<void>;
}

export async function startProxy(target: string, options: ProxyOptions = {}): Promise<TestProxy> {
  const blobRequests = new Map<string, number>();
  const ranges: string[] = [];
  const storageAuthorizations: (string | undefined)[] = [];
  let storageRequests = 0;
  const cutAlready = new Set<string>();
  const servers: Server[] = [];

  let storageHost = '';
  if (options.redirectBlobsTo) {
    const registry = options.redirectBlobsTo;
    const storage = createServer((request, response) => {
      storageRequests++;
      storageAuthorizations.push(request.headers.authorization);
      const digest = /\/(sha256:[a-f0-9]{64})$/.exec(new URL(request.url ?? '/', 'http://storage').pathname)?.[1];
      const path = digest ? registry.blobPath(digest) : '';
      if (!digest || !existsSync(path)) {
        response.writeHead(404).end();
        return;
      }
      serveFile(request, response, path);
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    storageHost = `127.0.0.1:${(storage.address() as AddressInfo).port}`;
    servers.push(storage);
  }

  const proxy = createServer((request, response) => {
    const blob = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(request.url ?? '');
    if (blob && request.method === 'GET') {
      blobRequests.set(blob[1], (blobRequests.get(blob[1]) ?? 0) + 1);
      ranges.push(String(request.headers.range ?? ''));
      if (options.redirectBlobsTo) {
        response.writeHead(307, { location: `http://${storageHost}/signed/${blob[1]}?signature=abc` }).end();
        return;
      }
    }
    const [hostname, port] = target.split(':');
    const upstream = httpRequest({ hostname, port: Number(port), method: request.method, path: request.url, headers: { ...request.headers, host: target } }, (upstreamResponse) => {
      response.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
      const cutAt = options.cutFirstBlobTransferAfter;
      const length = Number(upstreamResponse.headers['content-length']);
      if (blob && request.method === 'GET' && cutAt !== undefined && length > cutAt && !cutAlready.has(blob[1]) && upstreamResponse.statusCode === 200) {
        cutAlready.add(blob[1]);
        let sent = 0;
        upstreamResponse.on('data', (chunk: Buffer) => {
          if (sent >= cutAt) return;
          const part = chunk.subarray(0, cutAt - sent);
          sent += part.length;
          if (sent < cutAt) {
            response.write(part);
            return;
          }
          // Drop the connection mid-body, as a flaky network does. The socket is ended (FIN after
          // what was written) rather than reset: a reset may discard bytes the client's kernel
          // holds but has not handed over yet, and the test checks the resume offset exactly.
          upstreamResponse.destroy();
          response.write(part, () => response.socket?.end());
        });
        return;
      }
      upstreamResponse.pipe(response);
    });
    upstream.on('error', () => response.destroy());
    request.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  servers.push(proxy);
  return {
    host: `127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    blobRequests,
    ranges,
    storageAuthorizations,
    get storageRequests() {
      return storageRequests;
    },
    async close() {
      for (const server of servers) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}

/** Serves a file with `Range` support, as blob storage does. */
function serveFile(request: IncomingMessage, response: ServerResponse, path: string): void {
  const size = statSync(path).size;
  const range = /^bytes=(\d+)-$/.exec(String(request.headers.range ?? ''));
  const start = range ? Number(range[1]) : 0;
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'content-length': size - start, 'accept-ranges': 'bytes' };
  if (range) headers['content-range'] = `bytes ${start}-${size - 1}/${size}`;
  response.writeHead(range ? 206 : 200, headers);
  createReadStream(path, { start }).pipe(response);
}
