/**
 * @module compute/functions/confine
 * What a build reads on the host stays inside the tenant's own inputs: the source folder (an
 * upload, an inline file, or a cloned repository) and the node_modules installed for it. Paths
 * are resolved first (realpath, so symlinks are followed) and checked after; a symlink, a
 * subfolder, a package.json `main` or a dependency that leads outside is a 400 naming it, never
 * quoting what is there.
 */
import { readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { errors } from '../../kit/errors.js';

/** Whether `path` is `root` or below it (both absolute; compared as given). */
export function isInside(path: string, root: string): boolean {
  const rest = relative(root, path);
  return rest === '' || (!isAbsolute(rest) && rest !== '..' && !rest.startsWith(`..${sep}`));
}

/** The real path of `path`, or undefined when it does not exist (or loops). */
export function realPathOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** Whether `path`, once resolved, is inside one of `roots` (real paths). */
export function resolvesInside(path: string, roots: string[]): boolean {
  const real = realPathOf(path);
  return real !== undefined && roots.some((root) => isInside(real, root));
}

/**
 * Refuses a folder holding a symlink that leads outside `root` (a real path), however many
 * links it goes through; links inside it are kept. Symlinks are never descended into, so the
 * walk stays in the folder. `what` names the folder in the 400 ("the repository").
 */
export function assertNoEscapingSymlinks(folder: string, root: string, what: string): void {
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isSymbolicLink()) {
        const shown = relative(folder, path).split(sep).join('/');
        if (isLoop(path)) throw errors.badRequest(`${what}: "${shown}" is a symlink that loops; remove it`);
        // A link to nothing is judged by where it points; the links it points through are checked in their turn.
        const target = realPathOf(path) ?? resolve(realPathOf(dirname(path)) ?? dirname(path), readlinkSync(path));
        if (!isInside(target, root))
          throw errors.badRequest(`${what}: "${shown}" is a symlink to a path outside ${what}; a build reads only its own files (make it a copy, or a link inside the folder)`);
      } else if (entry.isDirectory()) walk(path);
    }
  };
  walk(folder);
}

function isLoop(path: string): boolean {
  try {
    realpathSync(path);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ELOOP';
  }
}

/**
 * The source folder of a build, checked: it must resolve inside `top` (the build's `src`
 * folder: a repository's subfolder may be a symlink) and hold no symlink leading out of `top`.
 * Answers the real path of `top`, the root the build may read.
 */
export function confineSource(folder: string, top: string, what: string): string {
  const root = realpathSync(top);
  const real = realPathOf(folder);
  if (real === undefined || !isInside(real, root)) throw errors.badRequest(`${what}: the folder to build leads outside ${what} (a symlink); name a real folder`);
  assertNoEscapingSymlinks(top, root, what);
  return root;
}
