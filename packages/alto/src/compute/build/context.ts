/**
 * @module compute/build/context
 * The build context: the folder a Dockerfile build may read (an upload or a cloned repository),
 * filtered by its `.dockerignore` as Docker reads it (Go's filepath.Match patterns, `**` for any
 * number of folders, `!` to take a path back, the last matching line deciding). Every path COPY
 * or ADD names is resolved inside the context: one that climbs out (`../x`) or a symlink that
 * leads out of it is a 400 naming the line, and nothing outside is ever read.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { errors } from '../../kit/errors.js';

/** Files in a context at most (what is walked, ignored or not). */
const MAX_CONTEXT_ENTRIES = 20_000;

interface IgnoreRule {
  pattern: RegExp;
  exclude: boolean;
}

export class BuildContext {
  private readonly rules: IgnoreRule[];
  /** Every path of the context (relative, `/`-separated) not ignored, folders included. */
  readonly paths: string[] = [];

  constructor(readonly root: string) {
    this.rules = readDockerignore(root);
    this.walk('');
  }

  private walk(relative: string): void {
    const folder = relative ? join(this.root, relative) : this.root;
    for (const name of readdirSync(folder).sort()) {
      const path = relative ? `${relative}/${name}` : name;
      if (this.paths.length >= MAX_CONTEXT_ENTRIES) throw errors.payloadTooLarge(`the build context holds more than ${MAX_CONTEXT_ENTRIES} files`);
      const info = lstatSync(join(this.root, path));
      if (info.isSymbolicLink()) this.checkSymlink(path);
      if (this.isIgnored(path)) {
        // An ignored folder may still hold a path a later `!` line takes back.
        if (info.isDirectory() && this.rules.some((rule) => !rule.exclude)) this.walk(path);
        continue;
      }
      this.paths.push(path);
      if (info.isDirectory()) this.walk(path);
    }
  }

  /** A symlink of the context must stay inside it, wherever it is copied from. */
  private checkSymlink(path: string): void {
    const target = readlinkSync(join(this.root, path));
    const resolved = posix.normalize(posix.join(posix.dirname(path), target));
    // An absolute target names a place on the machine that reads the context, not in it.
    if (target.startsWith('/') || resolved === '..' || resolved.startsWith('../'))
      throw errors.badRequest(`the build context's symlink ${path} points outside the context (${target}); copy the file into the context instead`);
  }

  isIgnored(path: string): boolean {
    let ignored = false;
    for (const rule of this.rules) {
      if (matchesWithParents(rule.pattern, path)) ignored = rule.exclude;
    }
    return ignored;
  }

  has(path: string): boolean {
    return path === '' || this.paths.includes(path);
  }

  /**
   * The context paths a COPY source names (wildcards allowed), relative and normalized. A path
   * that leaves the context is refused with `refuse`, one not in it (or ignored) too.
   */
  resolveSource(source: string, refuse: (detail: string) => Error): string[] {
    const lexical = posix.normalize(source);
    if (lexical === '..' || lexical.startsWith('../')) throw refuse(`${source} is outside the build context`);
    const normalized = posix.normalize(`/${source}`);
    const relative = normalized.slice(1).replace(/\/$/, '');
    if (/[*?[]/.test(relative)) {
      const pattern = globToRegExp(relative);
      const matches = this.paths.filter((path) => pattern.test(path));
      if (matches.length === 0) throw refuse(`no file of the build context matches ${source}`);
      return matches;
    }
    if (!this.has(relative)) throw refuse(`${source} is not in the build context${this.isIgnored(relative) ? ' (.dockerignore leaves it out)' : ''}`);
    return [relative];
  }

  /** Context paths below a folder of the context (for copying a folder whole). */
  below(folder: string): string[] {
    if (folder === '') return this.paths;
    const prefix = `${folder}/`;
    return this.paths.filter((path) => path.startsWith(prefix));
  }

  read(path: string): Buffer {
    return readFileSync(join(this.root, path));
  }
}

/** `.dockerignore` into rules; a missing file ignores nothing. */
function readDockerignore(root: string): IgnoreRule[] {
  let text: string;
  try {
    text = readFileSync(join(root, '.dockerignore'), 'utf8');
  } catch {
    return [];
  }
  const rules: IgnoreRule[] = [];
  for (const rawLine of text.split('\n')) {
    let line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    let exclude = true;
    if (line.startsWith('!')) {
      exclude = false;
      line = line.slice(1).trim();
    }
    const cleaned = posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '');
    if (!cleaned || cleaned === '.') continue;
    rules.push({ pattern: globToRegExp(cleaned), exclude });
  }
  return rules;
}

/** A path matches a rule when it or one of its parent folders does (so `docs` leaves out docs/a). */
function matchesWithParents(pattern: RegExp, path: string): boolean {
  const parts = path.split('/');
  for (let count = parts.length; count >= 1; count--) if (pattern.test(parts.slice(0, count).join('/'))) return true;
  return false;
}

/** Go's filepath.Match syntax plus `**`: `*` and `?` stop at `/`, `[...]` classes, `**` spans folders. */
export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let index = 0; index < glob.length; index++) {
    const char = glob[index];
    if (char === '*') {
      if (glob[index + 1] === '*') {
        const slash = glob[index + 2] === '/';
        source += slash ? '(?:.*/)?' : '.*';
        index += slash ? 2 : 1;
      } else source += '[^/]*';
    } else if (char === '?') source += '[^/]';
    else if (char === '[') {
      const close = glob.indexOf(']', index + 1);
      if (close < 0) source += '\\[';
      else {
        let body = glob.slice(index + 1, close);
        if (body.startsWith('^') || body.startsWith('!')) body = `^${body.slice(1)}`;
        source += `[${body.replace(/\\/g, '\\\\')}]`;
        index = close;
      }
    } else if (char === '\\' && index + 1 < glob.length) {
      source += escapeRegExp(glob[index + 1]);
      index++;
    } else source += escapeRegExp(char);
  }
  return new RegExp(`^${source}$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** The folder a context path lives in ('' for the top). */
export function parentOf(path: string): string {
  const parent = dirname(path);
  return parent === '.' ? '' : parent;
}
