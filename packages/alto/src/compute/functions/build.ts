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
 *
 * The build runs on the host, so it reads only the tenant's inputs (confine.ts): every import
 * is resolved, then its real path checked to be in the source, its installed node_modules or
 * Alto's own SDK; anything else (absolute paths, `../` out of the folder, `/proc`, a symlink
 * leading out) is refused by name. No tsconfig is read from disk by esbuild: the folder's own is
 * read here, its `extends` confined the same way. Messages quote source lines only from those
 * files, npm runs with no secrets in its environment and no local (`file:`, `link:`) packages.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { build as esbuild, type Message, type OnResolveResult, type Plugin } from 'esbuild';
import { AltoError } from '../../kit/errors.js';
import { assertNoEscapingSymlinks, isInside, realPathOf, resolvesInside } from './confine.js';
import { renameIntoPlace } from '../../kit/files.js';
import type { LayerFile } from './layers.js';
import { functionServerSource, type HandlerStyle } from './server-source.js';

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

export type { HandlerStyle } from './server-source.js';

export interface BundleResult {
  /** The bundled server (ESM), ready to be /app/index.mjs. */
  code: string;
  style: HandlerStyle;
  /** Lines for the build log. */
  log: string[];
}

/** The file the handler is in: package.json's `main`, else the first of the usual names. */
export function findEntryFile(folder: string, root: string = folder): string {
  const manifest = readPackageJson(folder);
  if (typeof manifest?.main === 'string') {
    const main = join(folder, manifest.main);
    const inside = (path: string) => existsSync(path) && statSync(path).isFile() && resolvesInside(path, [realPathOf(root) ?? root]);
    if (!isInside(resolve(main), resolve(root))) throw new BuildFailure(`package.json names main "${manifest.main}", which is outside the folder; name a file of the folder`, '');
    if (inside(main)) return main;
    for (const extension of ['.ts', '.js', '.mjs']) if (inside(main + extension)) return main + extension;
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
  assertRegistryDependencies(manifest!);
  const lockfile = join(folder, 'package-lock.json');
  if (existsSync(lockfile)) assertRegistryLockfile(lockfile);
  const key = createHash('sha256')
    .update(JSON.stringify({ dependencies: manifest?.dependencies ?? {}, optional: manifest?.optionalDependencies ?? {} }))
    .update(existsSync(lockfile) ? readFileSync(lockfile) : '')
    .digest('hex')
    .slice(0, 32);
  const target = join(depsRoot, key);
  if (existsSync(join(target, 'node_modules'))) {
    log.push(`dependencies: cached (${Object.keys(dependencies).join(', ')})`);
    return confinedNodeModules(join(target, 'node_modules'));
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
      env: buildEnvironment(),
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
  try {
    confinedNodeModules(join(temporary, 'node_modules'));
  } catch (error) {
    rmSync(temporary, { recursive: true, force: true });
    throw error;
  }
  renameIntoPlace(temporary, target);
  return join(target, 'node_modules');
}

/** Installed packages hold no symlink out of their node_modules (npm links `file:` packages). */
function confinedNodeModules(nodeModules: string): string {
  if (existsSync(nodeModules)) assertNoEscapingSymlinks(nodeModules, realPathOf(nodeModules)!, 'the installed node_modules');
  return nodeModules;
}

/**
 * What the tools a build runs (npm) see of Alto's environment: how to find programs, npm's own
 * configuration and the proxy, never Alto's keys or cloud credentials.
 */
export function buildEnvironment(source: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const kept = /^(PATH|HOME|USER|LOGNAME|LANG|LC_[A-Z]+|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR|NODE_EXTRA_CA_CERTS|(HTTPS?|NO)_PROXY|(https?|no)_proxy|npm_config_[A-Za-z0-9_]+|NPM_CONFIG_[A-Z0-9_]+)$/;
  const environment: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(source)) if (kept.test(name) && value !== undefined) environment[name] = value;
  return environment;
}

/** A dependency npm would take from the disk (or link) rather than a registry or remote: its spec. */
function isLocalSpec(spec: unknown): boolean {
  if (typeof spec !== 'string') return false;
  const value = spec.trim();
  return /^(file|link|portal|workspace|git\+file):/i.test(value) || /^[./~\\]/.test(value) || /^[A-Za-z]:[\\/]/.test(value);
}

/** Refuses package.json dependencies on local paths (they read the server's disk) and workspaces. */
function assertRegistryDependencies(manifest: Record<string, any>): void {
  if (manifest.workspaces !== undefined) throw new BuildFailure('package.json has workspaces: Alto installs dependencies from the registry only; remove workspaces', '');
  const check = (field: string, specs: unknown, path: string[] = []) => {
    if (!specs || typeof specs !== 'object') return;
    for (const [name, spec] of Object.entries(specs as Record<string, unknown>)) {
      if (spec && typeof spec === 'object') check(field, spec, [...path, name]);
      else if (isLocalSpec(spec))
        throw new BuildFailure(`package.json ${field} "${[...path, name].join(' > ')}" is a local path (${String(spec)}): Alto installs dependencies from the registry only; publish it, or put its code in the folder`, '');
    }
  };
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies', 'devDependencies', 'overrides']) check(field, manifest[field]);
}

/** Refuses a lockfile that links or resolves packages from the disk. */
function assertRegistryLockfile(lockfile: string): void {
  let lock: Record<string, any>;
  try {
    lock = JSON.parse(readFileSync(lockfile, 'utf8')) as Record<string, any>;
  } catch {
    throw new BuildFailure('package-lock.json is not valid JSON; remove it or generate it again with npm install', '');
  }
  for (const [path, entry] of Object.entries<Record<string, any>>({ ...(lock.packages ?? {}), ...(lock.dependencies ?? {}) })) {
    if (!entry || typeof entry !== 'object' || path === '') continue;
    if (entry.link === true || isLocalSpec(entry.resolved) || isLocalSpec(entry.version))
      throw new BuildFailure(`package-lock.json installs "${path}" from a local path: Alto installs dependencies from the registry only; remove the entry or the lockfile`, '');
  }
}

/** Where `@alto/sdk` is for bundles: Alto's own copy. */
function sdkEntry(): string | undefined {
  try {
    return createRequire(import.meta.url).resolve('@alto/sdk');
  } catch {
    return undefined;
  }
}

/** The files a build may read: the source's tree and its installed node_modules (real paths). */
interface ReadableRoots {
  /** Where the tenant's files are: the source folder (a repository's whole checkout). */
  source: string;
  roots: string[];
}

function readableRootsOf(options: BundleOptions): ReadableRoots {
  const source = realPathOf(options.sourceRoot ?? options.folder) ?? options.folder;
  const roots = [source];
  const nodeModules = options.nodeModules && realPathOf(options.nodeModules);
  if (nodeModules) roots.push(nodeModules);
  return { source, roots };
}

/**
 * esbuild's messages as `file:line:column: text` with the offending line under it, for files
 * the build may read only: a message about any other file (which esbuild may have parsed on its
 * own, and whose words it quotes) keeps its place but not its text.
 */
function formatMessages(messages: Message[], folder: string, readable: ReadableRoots): string {
  return messages
    .slice(0, 5)
    .map((message) => {
      const where = message.location;
      if (!where) return message.text;
      const path = isAbsolute(where.file) ? where.file : resolve(folder, where.file);
      const quotable = where.file === '<stdin>' || where.namespace === 'dataurl' || where.file.startsWith('data:') || resolvesInside(path, readable.roots);
      const file = isAbsolute(where.file) ? relative(folder, where.file) : where.file;
      if (!quotable) return `${file}:${where.line}:${where.column + 1}: an error in a file outside the source (not shown)`;
      return `${file}:${where.line}:${where.column + 1}: ${message.text}\n    ${where.lineText.trim()}`;
    })
    .join('\n');
}

function failureOf(error: unknown, folder: string, readable: ReadableRoots, what: string): never {
  if (Array.isArray((error as { errors?: Message[] }).errors)) {
    const text = formatMessages((error as { errors: Message[] }).errors, folder, readable);
    throw new BuildFailure(`${what} failed:\n${text}`, text);
  }
  throw error;
}

export interface BundleOptions {
  folder: string;
  /** The folder the build may read (a repository's checkout around a subfolder); default: folder. */
  sourceRoot?: string;
  entryFile: string;
  /** M3O's entrypoint: the export to call with the JSON body. */
  entrypoint?: string;
  /** The function's name: M3O's default entrypoint when there is no default export. */
  name: string;
  nodeModules?: string;
  /** `node` version in the image, such as v22.23.3 (the bundle's target). */
  nodeVersion: string;
}

const RESOLVING = 'altoResolving';

/**
 * The esbuild plugin that decides what a build may read: every import (entry points, `import`,
 * `require`, dynamic `import()`, CSS `@import`, any loader) is resolved by esbuild, then its real
 * path must be in `readable` or in Alto's own SDK (and what the SDK itself imports); Node's
 * built-ins stay external and `data:` URLs carry their own bytes. The rest is refused by name.
 */
function confinementPlugin(readable: ReadableRoots, folder: string): Plugin {
  const sdk = sdkEntry();
  const sdkFile = sdk && realPathOf(sdk);
  const sdkRoot = sdkFile && packageRootOf(sdkFile);
  /** Files Alto brings (the SDK and its own imports): what they import is Alto's choice, not the tenant's. */
  const alto = new Set<string>();
  const shown = (importer: string) => (isAbsolute(importer) ? relative(folder, importer).split(sep).join('/') : importer);
  const refuse = (path: string, importer: string, why: string): OnResolveResult => ({
    errors: [{ text: `the import "${path}"${importer ? ` in ${shown(importer)}` : ''} ${why}; a build reads only the function's folder and its installed node_modules` }],
  });
  return {
    name: 'alto-confine',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args): Promise<OnResolveResult | undefined> => {
        if (args.pluginData?.[RESOLVING]) return undefined;
        if (args.path === '@alto/sdk' && sdkFile) {
          alto.add(sdkFile);
          return { path: sdkFile };
        }
        if (/^file:/i.test(args.path)) return refuse(args.path, args.importer, 'is a file: URL');
        const result = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          namespace: args.namespace,
          with: args.with,
          pluginData: { [RESOLVING]: true },
        });
        // Not found: esbuild's own resolver fails the same way (reading nothing) and says so as
        // usual (a warning for a require() in a try, as optional dependencies do).
        if (result.errors.length > 0) return undefined;
        if (result.external) {
          if (isBuiltin(result.path)) return { path: result.path, external: true };
          return refuse(args.path, args.importer, 'is not a file of the folder nor a Node.js built-in');
        }
        if (result.namespace === 'dataurl') return { path: result.path, namespace: 'dataurl' };
        if (result.namespace !== 'file') return refuse(args.path, args.importer, `resolves into "${result.namespace}"`);
        const real = realPathOf(result.path);
        if (real === undefined) return refuse(args.path, args.importer, 'does not exist');
        const fromAlto = alto.has(args.importer) || Boolean(sdkRoot && isInside(real, sdkRoot));
        if (!fromAlto && !readable.roots.some((root) => isInside(real, root)))
          return refuse(args.path, args.importer, 'is outside the folder');
        if (fromAlto) alto.add(real);
        return { path: real, sideEffects: result.sideEffects, suffix: result.suffix };
      });
    },
  };
}

/** The folder of the package a file is in (the nearest folder above it with a package.json). */
function packageRootOf(file: string): string | undefined {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) if (existsSync(join(dir, 'package.json'))) return dir;
  return undefined;
}

/** tsconfig compilerOptions esbuild acts on. */
const TSCONFIG_OPTIONS = [
  'alwaysStrict',
  'baseUrl',
  'experimentalDecorators',
  'importsNotUsedAsValues',
  'jsx',
  'jsxFactory',
  'jsxFragmentFactory',
  'jsxImportSource',
  'paths',
  'preserveValueImports',
  'strict',
  'useDefineForClassFields',
  'verbatimModuleSyntax',
];

/**
 * The folder's tsconfig.json (or jsconfig.json), read here rather than by esbuild (which would
 * follow `extends` anywhere on the disk and quote what it found): `extends` must resolve inside
 * the source or its node_modules; `baseUrl` and `paths` are made absolute, and what `paths` leads
 * to is checked as any import.
 */
export function tsconfigOf(folder: string, readable: ReadableRoots, nodeModules: string | undefined): { compilerOptions: Record<string, unknown> } {
  const first = ['tsconfig.json', 'jsconfig.json'].map((name) => join(folder, name)).find((path) => existsSync(path));
  if (!first) return { compilerOptions: {} };
  const merged: Record<string, unknown> = {};
  const seen = new Set<string>();
  const visit = (path: string, depth: number) => {
    const name = relative(folder, path).split(sep).join('/') || path;
    if (depth > 8 || seen.has(path)) throw new BuildFailure(`${name}: extends goes round in circles or more than 8 deep`, '');
    seen.add(path);
    let config: Record<string, any>;
    try {
      config = JSON.parse(withoutJsonComments(readFileSync(path, 'utf8'))) as Record<string, any>;
    } catch {
      throw new BuildFailure(`${name} is not valid JSON (comments and trailing commas are fine)`, '');
    }
    const bases = config.extends === undefined ? [] : Array.isArray(config.extends) ? config.extends : [config.extends];
    for (const base of bases) {
      if (typeof base !== 'string') throw new BuildFailure(`${name}: extends must name a file`, '');
      const found = tsconfigBase(base, dirname(path), nodeModules);
      if (!found || !resolvesInside(found, readable.roots))
        throw new BuildFailure(`${name} extends "${base}", which is ${found ? 'outside the folder' : 'not in the folder nor its node_modules'}; a build reads only the function's folder and its installed node_modules`, '');
      visit(realPathOf(found)!, depth + 1);
    }
    const options = (config.compilerOptions ?? {}) as Record<string, unknown>;
    for (const option of TSCONFIG_OPTIONS) {
      if (options[option] === undefined) continue;
      merged[option] = options[option];
      // Relative to the file that says them, as TypeScript reads them.
      if (option === 'baseUrl' && typeof options.baseUrl === 'string') merged.baseUrl = resolve(dirname(path), options.baseUrl);
      if (option === 'paths' && options.baseUrl === undefined) merged.pathsBase = dirname(path);
    }
  };
  visit(first, 0);
  if (merged.paths !== undefined && merged.baseUrl === undefined) merged.baseUrl = merged.pathsBase;
  delete merged.pathsBase;
  return { compilerOptions: merged };
}

/** Where a tsconfig `extends` points: a path from `dir`, or a package in node_modules. */
function tsconfigBase(base: string, dir: string, nodeModules: string | undefined): string | undefined {
  const candidates = (path: string) => [path, `${path}.json`, join(path, 'tsconfig.json')];
  const options =
    base.startsWith('.') || isAbsolute(base)
      ? candidates(resolve(dir, base))
      : [nodeModules, join(dir, 'node_modules')].filter((where): where is string => Boolean(where)).flatMap((where) => candidates(join(where, base)));
  return options.find((path) => existsSync(path) && statSync(path).isFile());
}

/** JSON with comments and trailing commas (tsconfig's dialect) as plain JSON. */
function withoutJsonComments(text: string): string {
  let out = '';
  for (let index = 0; index < text.length; index++) {
    const char = text[index]!;
    if (char === '"') {
      const start = index;
      for (index++; index < text.length && text[index] !== '"'; index++) if (text[index] === '\\') index++;
      out += text.slice(start, index + 1);
    } else if (char === '/' && text[index + 1] === '/') {
      while (index < text.length && text[index] !== '\n') index++;
      out += '\n';
    } else if (char === '/' && text[index + 1] === '*') {
      index = text.indexOf('*/', index + 2);
      if (index === -1) break;
      index++;
    } else out += char;
  }
  return out.replace(/,(\s*[}\]])/g, '$1');
}

const common = (options: BundleOptions, readable: ReadableRoots) => ({
  bundle: true,
  platform: 'node' as const,
  format: 'esm' as const,
  target: `node${options.nodeVersion.replace(/^v/, '').split('.')[0]}`,
  write: false,
  logLevel: 'silent' as const,
  absWorkingDir: options.folder,
  nodePaths: options.nodeModules ? [options.nodeModules] : [],
  // Given, so esbuild reads no tsconfig.json of its own.
  tsconfigRaw: tsconfigOf(options.folder, readable, options.nodeModules),
  plugins: [confinementPlugin(readable, options.folder)],
  // Bundled CommonJS packages may call require(); ESM output has none unless given one.
  banner: { js: "import { createRequire as __altoCreateRequire } from 'node:module'; const require = __altoCreateRequire(import.meta.url);" },
});

/** Bundles the handler with the server around it; throws BuildFailure for faults in the code. */
export async function bundleFunction(given: BundleOptions): Promise<BundleResult> {
  const log: string[] = [];
  // Real paths throughout, as the confinement plugin answers them.
  const options = { ...given, folder: realPathOf(given.folder) ?? given.folder, entryFile: realPathOf(given.entryFile) ?? given.entryFile };
  const readable = readableRootsOf(options);
  // First the handler alone: its errors, and which names it exports.
  let exportsOfHandler: string[];
  let handlerFormat: string | undefined;
  try {
    const result = await esbuild({ ...common(options, readable), entryPoints: [options.entryFile], outdir: join(options.folder, '.alto-check'), metafile: true });
    const output = Object.values(result.metafile.outputs).find((candidate) => candidate.entryPoint);
    exportsOfHandler = output?.exports ?? [];
    const input = Object.entries(result.metafile.inputs).find(([path]) => join(options.folder, path) === options.entryFile || path === options.entryFile);
    handlerFormat = input?.[1].format;
    for (const warning of result.warnings) log.push(`warning: ${formatMessages([warning], options.folder, readable)}`);
  } catch (error) {
    failureOf(error, options.folder, readable, 'the build');
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
      ...common(options, readable),
      stdin: { contents: functionServerSource(options.entryFile, style), resolveDir: dirname(options.entryFile), sourcefile: 'alto-function-server.js', loader: 'js' },
      outfile: join(options.folder, '.alto-out', 'index.mjs'),
      minify: false,
    });
    const code = result.outputFiles![0].text;
    log.push(`bundled ${file} (${style.kind === 'web' ? 'default export: Request -> Response' : `export ${style.exportName}: JSON -> JSON`}) into ${code.length} bytes`);
    return { code, style, log };
  } catch (error) {
    failureOf(error, options.folder, readable, 'the build');
  }
}

/**
 * How a source-built app starts: package.json's `start` script when it is a plain
 * `node [options] <file> [args]` command (the image has node but no npm and no shell), else
 * `node <main>`. A Dockerfile or Containerfile found here is refused: a source with one is an
 * image to build from it (compute/build), not a Node.js project.
 */
export function startCommandOf(folder: string): string[] {
  if (existsSync(join(folder, 'Dockerfile')) || existsSync(join(folder, 'Containerfile')))
    throw new BuildFailure(
      'this folder has a Dockerfile or Containerfile: deploy it as an app built from it (alto deploy ./dir --dockerfile <file>, or app/Run with files or repo and dockerfile); Node.js projects are built from package.json (a start script "node <file>" or a main)',
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
    if (file && !isInside(resolve(folder, file), resolve(folder))) throw new BuildFailure(`the start script runs ${file}, which is outside the project; name a file of the project`, '');
    if (file && !existsSync(join(folder, file))) throw new BuildFailure(`the start script runs ${file}, which is not in the project`, '');
    return words.slice(1);
  }
  if (typeof manifest.main === 'string' && manifest.main.trim()) {
    if (!isInside(resolve(folder, manifest.main), resolve(folder))) throw new BuildFailure(`package.json names main "${manifest.main}", which is outside the project; name a file of the project`, '');
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
