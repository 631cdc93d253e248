/**
 * @module compute/functions/server-source
 * The source of the HTTP server around a function's handler: function-server.mjs beside this
 * module (copied into dist/ by the build, scripts/copy-assets.mjs), its two placeholders filled
 * in for one handler. A placeholder is a string literal `'@@NAME@@'` that stands for a value
 * only the build knows; `fillPlaceholders` puts a JavaScript expression in its place.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** How the handler is called: a web handler (Request in, Response out) or M3O's JSON style (a named export). */
export type HandlerStyle = { kind: 'web' } | { kind: 'json'; exportName: string };

const SERVER_FILE = fileURLToPath(new URL('./function-server.mjs', import.meta.url));
const PLACEHOLDER = /'@@([A-Z_]+)@@'/g;

let serverTemplate: string | undefined;

/** function-server.mjs for the handler in `entryFile`, called as `style` says. */
export function functionServerSource(entryFile: string, style: HandlerStyle): string {
  serverTemplate ??= readFileSync(SERVER_FILE, 'utf8');
  return fillPlaceholders(serverTemplate, { HANDLER_FILE: JSON.stringify(entryFile), HANDLER_STYLE: JSON.stringify(style) });
}

/**
 * Puts each expression of `values` in place of its placeholder `'@@NAME@@'` in `template`.
 * Every placeholder must have a value and every value a placeholder, so a renamed one fails here
 * rather than leaving a string where code was meant.
 */
export function fillPlaceholders(template: string, values: Record<string, string>): string {
  const used = new Set<string>();
  // Replaced by a function, so a `$` in a value is taken as it is, not as a pattern.
  const filled = template.replace(PLACEHOLDER, (_, name: string) => {
    if (!Object.hasOwn(values, name)) throw new Error(`the placeholder ${name} has no value`);
    used.add(name);
    return values[name];
  });
  const unused = Object.keys(values).filter((name) => !used.has(name));
  if (unused.length > 0) throw new Error(`no placeholder for ${unused.join(', ')}`);
  return filled;
}
