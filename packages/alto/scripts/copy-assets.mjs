#!/usr/bin/env node
// @ts-check
// Run by `npm run build` after tsc: copies every file of src/ that is not TypeScript into dist/
// at the same path, as it is written (tsc reprints the JavaScript it checks, and copies nothing
// else): the programs that run inside sandboxes (compute/sandbox/guest/), the function server
// (compute/functions/function-server.mjs), the sandbox launcher's C source. The code that uses
// them finds them beside itself (import.meta.url), in src/ and dist/ alike.
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
const source = join(packageDir, 'src');
const target = join(packageDir, 'dist');

/** @param {string} dir */
function copyAssets(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) copyAssets(path);
    else if (entry.isFile() && !entry.name.endsWith('.ts')) {
      const copy = join(target, relative(source, path));
      mkdirSync(dirname(copy), { recursive: true });
      // Modes too: the guest agent is executable.
      copyFileSync(path, copy);
      // tsc's source map of its reprint does not fit the file as written.
      if (/\.[cm]?js$/.test(entry.name)) rmSync(`${copy}.map`, { force: true });
    }
  }
}

copyAssets(source);
