/**
 * @module compute/functions/build
 * From a folder of JavaScript or TypeScript to one bundled file a bare `node` runs: the
 * package.json dependencies installed with `npm install --omit=dev --ignore-scripts` from the
 * registry npm is configured for (cached under `<data>/functions/deps/<hash>` by the
 * dependencies and lockfile, so a rebuild with the same ones installs nothing), then esbuild
 * bundles the handler with a small HTTP server around it (`@alto/sdk` resolves to Alto's own).
 *
 * Two handler styles:
 * - web: the module's default export (a function, or an object with `fetch`) takes a web
 *   `Request` and returns a `Response`;
 * - M3O: the export named by `entrypoint` gets the JSON body and its return value (awaited) is
 *   the JSON answer.
 * Build failures (syntax, missing export, an import that does not resolve, npm failing) are a
 * `BuildFailure` whose message names the file and line, for a 400.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { build as esbuild, type Message } from 'esbuild';
import { AltoError } from '../../kit/errors.js';
import { renameIntoPlace, type LayerFile } from './layers.js';

const execFileAsync = promisify(execFile);
const INSTALL_TIMEOUT_MS = 300_000;
const ENTRY_CANDIDATES = ['index.ts', 'index.mts', 'index.js', 'index.mjs', 'index.cjs', 'main.ts', 'main.js', 'handler.ts', 'handler.js'];

/** A build that failed because of the code: becomes a 400 carrying the compiler's words. */
export class BuildFailure extends AltoError {
  constructor(
    detail: string,
    readonly log: string,
  ) {
    super('bad_request', 400, detail);
  }
}

export type HandlerStyle = { kind: 'web' } | { kind: 'json'; exportName: string };

export interface BundleResult {
  /** The bundled server (ESM), ready to be /app/index.mjs. */
  code: string;
  style: HandlerStyle;
  /** Lines for the build log. */
  log: string[];
}

/** The file the handler is in: package.json's `main`, else the first of the usual names. */
export function findEntryFile(folder: string): string {
  const manifest = readPackageJson(folder);
  if (typeof manifest?.main === 'string') {
    const main = join(folder, manifest.main);
    if (existsSync(main)) return main;
    for (const extension of ['.ts', '.js', '.mjs']) if (existsSync(main + extension)) return main + extension;
    throw new BuildFailure(`package.json names main "${manifest.main}", which is not in the folder`, '');
  }
  for (const name of ENTRY_CANDIDATES) if (existsSync(join(folder, name))) return join(folder, name);
  throw new BuildFailure(`no handler file: the folder needs a package.json with main, or one of ${ENTRY_CANDIDATES.join(', ')}`, '');
}

export function readPackageJson(folder: string): Record<string, any> | undefined {
  const path = join(folder, 'package.json');
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, any>;
  } catch (error) {
    throw new BuildFailure(`package.json is not valid JSON: ${(error as Error).message}`, '');
  }
}

/**
 * Installs the folder's runtime dependencies, once per set of them; returns the node_modules
 * folder to resolve imports from, or undefined when there is none to install.
 */
export async function installDependencies(folder: string, depsRoot: string, log: string[]): Promise<string | undefined> {
  const manifest = readPackageJson(folder);
  const dependencies = { ...(manifest?.dependencies ?? {}), ...(manifest?.optionalDependencies ?? {}) };
  if (Object.keys(dependencies).length === 0) {
    if (existsSync(join(folder, 'node_modules'))) return join(folder, 'node_modules');
    return undefined;
  }
  const lockfile = join(folder, 'package-lock.json');
  const key = createHash('sha256')
    .update(JSON.stringify({ dependencies: manifest?.dependencies ?? {}, optional: manifest?.optionalDependencies ?? {} }))
    .update(existsSync(lockfile) ? readFileSync(lockfile) : '')
    .digest('hex')
    .slice(0, 32);
  const target = join(depsRoot, key);
  if (existsSync(join(target, 'node_modules'))) {
    log.push(`dependencies: cached (${Object.keys(dependencies).join(', ')})`);
    return join(target, 'node_modules');
  }
  mkdirSync(depsRoot, { recursive: true });
  const temporary = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  mkdirSync(temporary, { recursive: true });
  copyFileSync(join(folder, 'package.json'), join(temporary, 'package.json'));
  if (existsSync(lockfile)) copyFileSync(lockfile, join(temporary, 'package-lock.json'));
  const started = Date.now();
  try {
    const { stdout, stderr } = await execFileAsync('npm', ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: temporary,
      timeout: INSTALL_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });
    log.push(`npm install: ${[stdout, stderr].join('\n').trim() || 'done'} (${Date.now() - started} ms)`);
  } catch (error) {
    rmSync(temporary, { recursive: true, force: true });
    const output = `${(error as { stderr?: string }).stderr ?? ''}${(error as { stdout?: string }).stdout ?? ''}`.trim() || (error as Error).message;
    const lines = output.split('\n').filter((line) => line.trim()).slice(-8).join('\n');
    throw new BuildFailure(`installing the dependencies of package.json failed (npm install --omit=dev):\n${lines}`, output);
  }
  renameIntoPlace(temporary, target);
  return join(target, 'node_modules');
}

/** Where `@alto/sdk` is for bundles: Alto's own copy. */
function sdkEntry(): string | undefined {
  try {
    return createRequire(import.meta.url).resolve('@alto/sdk');
  } catch {
    return undefined;
  }
}

/** esbuild's messages as `file:line:column: text` with the offending line under it. */
function formatMessages(messages: Message[], folder: string): string {
  return messages
    .slice(0, 5)
    .map((message) => {
      const where = message.location;
      if (!where) return message.text;
      const file = where.file.startsWith('/') ? relative(folder, where.file) : where.file;
      return `${file}:${where.line}:${where.column + 1}: ${message.text}\n    ${where.lineText.trim()}`;
    })
    .join('\n');
}

function failureOf(error: unknown, folder: string, what: string): never {
  if (Array.isArray((error as { errors?: Message[] }).errors)) {
    const text = formatMessages((error as { errors: Message[] }).errors, folder);
    throw new BuildFailure(`${what} failed:\n${text}`, text);
  }
  throw error;
}

export interface BundleOptions {
  folder: string;
  entryFile: string;
  /** M3O's entrypoint: the export to call with the JSON body. */
  entrypoint?: string;
  /** The function's name: M3O's default entrypoint when there is no default export. */
  name: string;
  nodeModules?: string;
  /** `node` version in the image, such as v22.23.3 (the bundle's target). */
  nodeVersion: string;
}

const common = (options: BundleOptions) => {
  const sdk = sdkEntry();
  return {
    bundle: true,
    platform: 'node' as const,
    format: 'esm' as const,
    target: `node${options.nodeVersion.replace(/^v/, '').split('.')[0]}`,
    write: false,
    logLevel: 'silent' as const,
    absWorkingDir: options.folder,
    nodePaths: options.nodeModules ? [options.nodeModules] : [],
    ...(sdk ? { alias: { '@alto/sdk': sdk } } : {}),
    // Bundled CommonJS packages may call require(); ESM output has none unless given one.
    banner: { js: "import { createRequire as __altoCreateRequire } from 'node:module'; const require = __altoCreateRequire(import.meta.url);" },
  };
};

/** Bundles the handler with the server around it; throws BuildFailure for faults in the code. */
export async function bundleFunction(options: BundleOptions): Promise<BundleResult> {
  const log: string[] = [];
  // First the handler alone: its errors, and which names it exports.
  let exportsOfHandler: string[];
  let handlerFormat: string | undefined;
  try {
    const result = await esbuild({ ...common(options), entryPoints: [options.entryFile], outdir: join(options.folder, '.alto-check'), metafile: true });
    const output = Object.values(result.metafile.outputs).find((candidate) => candidate.entryPoint);
    exportsOfHandler = output?.exports ?? [];
    const input = Object.entries(result.metafile.inputs).find(([path]) => join(options.folder, path) === options.entryFile || path === options.entryFile);
    handlerFormat = input?.[1].format;
    for (const warning of result.warnings) log.push(`warning: ${formatMessages([warning], options.folder)}`);
  } catch (error) {
    failureOf(error, options.folder, 'the build');
  }
  const file = relative(options.folder, options.entryFile);
  const commonJs = handlerFormat === 'cjs';
  let style: HandlerStyle;
  if (options.entrypoint) {
    if (!commonJs && !exportsOfHandler.includes(options.entrypoint))
      throw new BuildFailure(`${file} has no export named "${options.entrypoint}" (the entrypoint); it exports: ${exportsOfHandler.join(', ') || 'nothing'}`, '');
    style = { kind: 'json', exportName: options.entrypoint };
  } else if (exportsOfHandler.includes('default') || commonJs) {
    style = { kind: 'web' };
  } else if (exportsOfHandler.includes(options.name)) {
    style = { kind: 'json', exportName: options.name };
  } else {
    throw new BuildFailure(
      `${file} has no default export (a function taking a Request and returning a Response) and no export named "${options.name}"; export one, or name the export to call with entrypoint (it exports: ${exportsOfHandler.join(', ') || 'nothing'})`,
      '',
    );
  }
  try {
    const result = await esbuild({
      ...common(options),
      stdin: { contents: serverSource(options.entryFile, style), resolveDir: dirname(options.entryFile), sourcefile: 'alto-function-server.js', loader: 'js' },
      outfile: join(options.folder, '.alto-out', 'index.mjs'),
      minify: false,
    });
    const code = result.outputFiles![0].text;
    log.push(`bundled ${file} (${style.kind === 'web' ? 'default export: Request -> Response' : `export ${style.exportName}: JSON -> JSON`}) into ${code.length} bytes`);
    return { code, style, log };
  } catch (error) {
    failureOf(error, options.folder, 'the build');
  }
}

/** The HTTP server the bundle runs: it listens on $PORT and hands each request to the handler. */
function serverSource(entryFile: string, style: HandlerStyle): string {
  return `import * as handlerModule from ${JSON.stringify(entryFile)};
import { createServer } from 'node:http';
import { Readable } from 'node:stream';

const STYLE = ${JSON.stringify(style)};
const port = Number(process.env.PORT || 8080);

function pick() {
  if (STYLE.kind === 'json') return handlerModule[STYLE.exportName];
  const exported = handlerModule.default;
  if (exported && typeof exported === 'object' && typeof exported.default === 'function') return exported.default;
  if (exported && typeof exported === 'object' && typeof exported.fetch === 'function') return exported.fetch.bind(exported);
  return exported;
}
const handler = pick();

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function answerJson(response, status, value) {
  const body = JSON.stringify(value === undefined ? {} : value);
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(body);
}

async function serveJson(request, response) {
  const bytes = await readBody(request);
  let input = {};
  if (bytes.length > 0) {
    try {
      input = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      return answerJson(response, 400, { error: 'the request body is not JSON: ' + error.message });
    }
  }
  answerJson(response, 200, await handler(input));
}

async function serveWeb(request, response) {
  const url = new URL(request.url, 'http://' + (request.headers.host || 'function'));
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (Array.isArray(value)) for (const one of value) headers.append(name, one);
    else if (value !== undefined) headers.set(name, value);
  }
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
  const webRequest = new Request(url, { method: request.method, headers, body: hasBody ? Readable.toWeb(request) : undefined, duplex: 'half' });
  const answer = await handler(webRequest);
  if (!(answer instanceof Response)) {
    if (answer === undefined) { response.writeHead(204); response.end(); return; }
    return answerJson(response, 200, answer);
  }
  const outgoing = {};
  answer.headers.forEach((value, name) => { if (name !== 'set-cookie') outgoing[name] = value; });
  const cookies = answer.headers.getSetCookie ? answer.headers.getSetCookie() : [];
  if (cookies.length) outgoing['set-cookie'] = cookies;
  response.writeHead(answer.status, answer.statusText, outgoing);
  if (!answer.body) { response.end(); return; }
  for await (const chunk of answer.body) response.write(chunk);
  response.end();
}

const server = createServer((request, response) => {
  const serve = STYLE.kind === 'json' ? serveJson : serveWeb;
  serve(request, response).catch((error) => {
    console.error(error && error.stack ? error.stack : String(error));
    if (!response.headersSent) answerJson(response, 500, { error: error && error.message ? error.message : String(error) });
    else response.destroy(error);
  });
});

if (typeof handler !== 'function') {
  console.error('the handler is not a function: ' + (STYLE.kind === 'json' ? 'export ' + STYLE.exportName : 'default export') + ' is ' + typeof handler);
  process.exit(1);
}
server.listen(port, () => console.log('function listening on ' + port));
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
`;
}

/**
 * How a source-built app starts: package.json's `start` script when it is a plain
 * `node [options] <file> [args]` command (the image has node but no npm and no shell), else
 * `node <main>`. A Dockerfile is refused: Alto builds Node.js projects, and runs images built
 * elsewhere.
 */
export function startCommandOf(folder: string): string[] {
  if (existsSync(join(folder, 'Dockerfile')) || existsSync(join(folder, 'Containerfile')))
    throw new BuildFailure(
      'this folder has a Dockerfile: Alto does not run Docker builds. It builds Node.js projects from source (package.json with a start script "node <file>" or a main); for anything else build an image and deploy it by reference (app/Run with image)',
      '',
    );
  const manifest = readPackageJson(folder);
  if (!manifest)
    throw new BuildFailure('no package.json: Alto builds Node.js projects from source (package.json with a start script "node <file>" or a main); for anything else deploy an image', '');
  const start = manifest.scripts?.start;
  if (typeof start === 'string' && start.trim()) {
    const words = start.trim().split(/\s+/);
    if (words[0] !== 'node' || words.length < 2 || /[;&|<>$`'"\\()*?]/.test(start))
      throw new BuildFailure(
        `the start script "${start}" is not a plain "node <file>" command; the app runs with node directly (no npm, no shell): make start "node <file>", or remove it and set main`,
        '',
      );
    const file = words.slice(1).find((word) => !word.startsWith('-'));
    if (file && !existsSync(join(folder, file))) throw new BuildFailure(`the start script runs ${file}, which is not in the project`, '');
    return words.slice(1);
  }
  if (typeof manifest.main === 'string' && manifest.main.trim()) {
    if (!existsSync(join(folder, manifest.main))) throw new BuildFailure(`package.json names main "${manifest.main}", which is not in the project`, '');
    return [manifest.main];
  }
  throw new BuildFailure('package.json has neither a start script ("node <file>") nor a main: Alto cannot tell how to start the app', '');
}

/** The project's files under /app (without .git and node_modules), then the installed node_modules. */
export function projectLayerFiles(folder: string, nodeModules: string | undefined): LayerFile[] {
  const files: LayerFile[] = [{ type: 'dir', path: 'app/' }];
  const walk = (dir: string, prefix: string, skipTop: boolean) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (skipTop && (entry.name === 'node_modules' || entry.name === '.git')) continue;
      const path = join(dir, entry.name);
      const inImage = `${prefix}${entry.name}`;
      if (entry.isSymbolicLink()) files.push({ type: 'symlink', path: inImage, target: readlinkSync(path) });
      else if (entry.isDirectory()) {
        files.push({ type: 'dir', path: `${inImage}/` });
        walk(path, `${inImage}/`, false);
      } else if (entry.isFile()) files.push({ type: 'file', path: inImage, content: readFileSync(path), mode: statSync(path).mode & 0o777 });
    }
  };
  walk(folder, 'app/', true);
  if (nodeModules && existsSync(nodeModules)) {
    files.push({ type: 'dir', path: 'app/node_modules/' });
    walk(nodeModules, 'app/node_modules/', false);
  }
  return files;
}
