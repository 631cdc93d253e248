/**
 * @module compute/functions/source
 * Where a function's (or a source-built app's) code comes from, written into a fresh build
 * folder: inline source (M3O's `source`, one file), an uploaded folder (`files`: path → base64
 * content, as the CLI sends a local folder; at most MAX_UPLOAD_BYTES in all), or a git
 * repository, branch and subfolder (`git clone --depth 1`). Repositories on this machine (a path
 * or `file://`) are for admin keys only, since they read the server's own disk.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { errors } from '../../kit/errors.js';
import { privateTargetsAllowed, resolveOutbound } from '../../kit/outbound-guard.js';

const execFileAsync = promisify(execFile);

/** Largest uploaded folder, decoded. */
export const MAX_UPLOAD_BYTES = 8 * 1024 * 1024;
export const MAX_UPLOAD_FILES = 2_000;
const CLONE_TIMEOUT_MS = 120_000;

export interface SourceInput {
  source?: string;
  files?: Record<string, string>;
  repo?: string;
  branch?: string;
  subfolder?: string;
}

/** Where the code was written, and which folder holds the project (the subfolder, for repositories). */
export interface FetchedSource {
  folder: string;
  kind: 'inline' | 'files' | 'repo';
  /** The commit a repository was at. */
  commit?: string;
}

export function describeSourceKinds(input: SourceInput): string[] {
  return [input.source !== undefined && 'source', input.files !== undefined && 'files', input.repo !== undefined && 'repo'].filter((kind): kind is string => Boolean(kind));
}

/** Writes the code of `input` under `buildDir` (which exists and is empty). */
export async function fetchSource(input: SourceInput, buildDir: string, options: { allowLocalRepos: boolean }): Promise<FetchedSource> {
  const kinds = describeSourceKinds(input);
  if (kinds.length === 0) throw errors.badRequest('give the code: source (inline), files (a folder, path -> base64) or repo (a git repository, with branch and subfolder)');
  if (kinds.length > 1) throw errors.badRequest(`give one of source, files and repo, not ${kinds.join(' and ')}`);
  const folder = join(buildDir, 'src');
  mkdirSync(folder, { recursive: true });
  if (input.source !== undefined) {
    if (!input.source.trim()) throw errors.badRequest('source is empty');
    writeFileSync(join(folder, 'index.ts'), input.source);
    return { folder, kind: 'inline' };
  }
  if (input.files !== undefined) {
    writeUploadedFiles(input.files, folder);
    return { folder, kind: 'files' };
  }
  return cloneRepository(input, folder, options);
}

/** A relative path inside the upload, or a 400 saying why not. */
function safeRelativePath(path: string): string {
  const normalized = normalize(path.replace(/\\/g, '/'));
  if (!path || path.includes('\0') || normalized.startsWith('/') || normalized === '..' || normalized.startsWith(`..${sep}`) || normalized.split(sep).includes('..'))
    throw errors.badRequest(`files: "${path}" must be a relative path inside the folder (no .., not absolute)`);
  return normalized;
}

function writeUploadedFiles(files: Record<string, string>, folder: string): void {
  const entries = Object.entries(files);
  if (entries.length === 0) throw errors.badRequest('files is empty: give at least the handler file');
  if (entries.length > MAX_UPLOAD_FILES) throw errors.payloadTooLarge(`files holds ${entries.length} files; at most ${MAX_UPLOAD_FILES} (leave node_modules out: dependencies are installed from package.json)`);
  let total = 0;
  for (const [path, content] of entries) {
    const relative = safeRelativePath(path);
    const bytes = Buffer.from(content, 'base64');
    total += bytes.length;
    if (total > MAX_UPLOAD_BYTES)
      throw errors.payloadTooLarge(`files add up to more than ${MAX_UPLOAD_BYTES} bytes; leave node_modules and build output out, or deploy from a git repository (repo)`);
    const target = join(folder, relative);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}

function isLocalRepository(repo: string): boolean {
  return repo.startsWith('file://') || repo.startsWith('/') || repo.startsWith('.');
}

/** Hosts (`host` or `host:port`) whose repositories project keys may clone over plain HTTP and on private addresses (ALTO_TRUSTED_GIT_HOSTS). */
function trustedGitHosts(): string[] {
  return (process.env.ALTO_TRUSTED_GIT_HOSTS ?? '')
    .split(',')
    .map((host) => host.trim().toLowerCase())
    .filter(Boolean);
}

/**
 * The `git` options that keep a clone for a project key where the guard let it go: only the
 * protocol allowed, no redirects, the host pinned to the checked address (curl's --resolve), and
 * none of the machine's own git configuration (credential helpers, `insteadOf` rewrites, filters).
 */
async function guardedClone(repo: string): Promise<{ options: string[]; url: string }> {
  let url: URL;
  try {
    url = new URL(repo);
  } catch {
    throw errors.badRequest(`repo "${repo}" is not a git URL: use https://host/org/repo`);
  }
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const trusted = trustedGitHosts().some((entry) => entry === url.hostname || entry === `${url.hostname}:${port}` || entry === url.host);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && trusted)) {
    throw errors.badRequest(`repo "${repo}": a project key clones over https:// only (not ${url.protocol}//); plain http:// only from hosts the operator trusts (ALTO_TRUSTED_GIT_HOSTS)`);
  }
  const target = await resolveOutbound(url.hostname, { allowPrivate: trusted || privateTargetsAllowed() });
  const pinned = target.addresses.map((entry) => (entry.family === 6 ? `[${entry.address}]` : entry.address)).join(',');
  const scheme = url.protocol.slice(0, -1);
  const options = [
    '-c', 'protocol.allow=never',
    '-c', `protocol.${scheme}.allow=always`,
    '-c', 'http.followRedirects=false',
    '-c', `http.curloptResolve=${target.host}:${port}:${pinned}`,
    '-c', 'credential.helper=',
    '-c', 'core.askPass=',
  ];
  // git is given the URL as normalised here, so the host it looks up is the one pinned.
  return { options, url: url.href };
}

/** What a failed clone is answered as: a fixed sentence by kind, never git's (or the server's) own words. */
function describeCloneFailure(stderr: string, branch: string | undefined): string {
  if (branch && /Remote branch .* not found/i.test(stderr)) return `the branch "${branch}" does not exist`;
  if (/Authentication failed|could not read Username|terminal prompts disabled|HTTP Basic: Access denied|403/i.test(stderr)) return 'the repository needs credentials or refused them';
  if (/not found|does not appear to be a git repository|404/i.test(stderr)) return 'the repository does not exist (or is private)';
  if (/Could not resolve host|Failed to connect|Connection refused|timed out|Connection reset|unable to access/i.test(stderr)) return 'the repository could not be reached';
  if (/redirect/i.test(stderr)) return 'the server answered with a redirect, which is not followed; give the final URL';
  return 'git could not fetch it';
}

async function cloneRepository(input: SourceInput, folder: string, options: { allowLocalRepos: boolean }): Promise<FetchedSource> {
  const repo = input.repo!.trim();
  if (!repo) throw errors.badRequest('repo is empty: give a git URL such as https://github.com/org/functions');
  if (repo.startsWith('-')) throw errors.badRequest(`repo "${repo}" is not a git URL`);
  let guard: string[] = [];
  let source = repo;
  if (isLocalRepository(repo)) {
    if (!options.allowLocalRepos) throw errors.forbidden(`repo "${repo}" is on the server's own disk; only an admin key may deploy from it (use an https:// git URL)`);
  } else if (!/^(https?|git|ssh):\/\//.test(repo)) {
    throw errors.badRequest(`repo "${repo}" is not a git URL: use https://host/org/repo (or file:// with an admin key)`);
  } else if (!options.allowLocalRepos) {
    // A project key's clone is a connection made on its behalf: through the outbound guard.
    ({ options: guard, url: source } = await guardedClone(repo));
  }
  const args = [...guard, 'clone', '--depth', '1', '--single-branch', '--no-recurse-submodules', '--quiet'];
  if (input.branch) {
    if (input.branch.startsWith('-')) throw errors.badRequest(`branch "${input.branch}" is not a branch name`);
    args.push('--branch', input.branch);
  }
  const checkout = join(folder, 'repo');
  args.push('--', source, checkout);
  const isolated = guard.length > 0 ? { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_LFS_SKIP_SMUDGE: '1' } : {};
  try {
    await execFileAsync('git', args, { timeout: CLONE_TIMEOUT_MS, env: { ...process.env, ...isolated, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'echo' } });
  } catch (error) {
    const stderr = ((error as { stderr?: string }).stderr ?? (error as Error).message).trim();
    throw errors.badRequest(`git clone ${repo}${input.branch ? ` (branch ${input.branch})` : ''} failed: ${describeCloneFailure(stderr, input.branch)}`);
  }
  const { stdout } = await execFileAsync('git', ['-C', checkout, 'rev-parse', 'HEAD']).catch(() => ({ stdout: '' }));
  return { folder: projectFolderOf(checkout, input.subfolder, repo), kind: 'repo', commit: stdout.trim() || undefined };
}

/** The project's folder in a checkout of `repo`: its `subfolder`, or a 400 when that is not a folder of it. */
export function projectFolderOf(checkout: string, subfolder: string | undefined, repo: string): string {
  const relative = subfolder?.trim().replace(/^\/+|\/+$/g, '');
  const project = relative ? join(checkout, safeRelativePath(relative)) : checkout;
  if (!resolve(project).startsWith(resolve(checkout)) || !existsSync(project) || !statSync(project).isDirectory())
    throw errors.badRequest(`subfolder "${subfolder}" is not a folder of ${repo}`);
  return project;
}
