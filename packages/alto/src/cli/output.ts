/**
 * @module cli/output
 * How the CLI prints: indented, coloured JSON and tables in a terminal; plain JSON with --json
 * or when piped, so scripts can read it.
 */
import { AltoError } from '@alto/sdk';

const useColor = () => process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number, text: string) => (useColor() ? `\x1b[${code}m${text}\x1b[0m` : text);
export const bold = (text: string) => paint(1, text);
export const dim = (text: string) => paint(2, text);
export const green = (text: string) => paint(32, text);
export const yellow = (text: string) => paint(33, text);
export const red = (text: string) => paint(31, text);

export function wantsJson(flags: { json?: boolean }): boolean {
  return Boolean(flags.json) || !process.stdout.isTTY;
}

export function printJson(value: unknown, flags: { json?: boolean }): void {
  if (wantsJson(flags)) {
    process.stdout.write(JSON.stringify(value) + '\n');
    return;
  }
  const text = JSON.stringify(value, null, 2);
  process.stdout.write(
    (useColor()
      ? text.replace(/"([^"\\]|\\.)*"(\s*:)?|\b(true|false|null)\b|-?\d+(\.\d+)?([eE][+-]?\d+)?/g, (token) =>
          token.endsWith(':') ? paint(36, token.slice(0, -1)) + ':' : /^"/.test(token) ? paint(32, token) : paint(33, token),
        )
      : text) + '\n',
  );
}

/** Rows as an aligned table in a terminal, or as JSON when asked or piped. */
export function printTable(rows: Record<string, unknown>[], columns: string[], flags: { json?: boolean }, whole: unknown): void {
  if (wantsJson(flags)) {
    process.stdout.write(JSON.stringify(whole) + '\n');
    return;
  }
  if (rows.length === 0) {
    process.stdout.write(dim('(none)') + '\n');
    return;
  }
  const cell = (value: unknown) => (Array.isArray(value) ? value.join(',') : String(value ?? ''));
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => cell(row[column]).length)));
  const line = (values: string[]) => values.map((value, i) => value.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write(bold(line(columns.map((column) => column.toUpperCase()))) + '\n');
  for (const row of rows) process.stdout.write(line(columns.map((column) => cell(row[column]))) + '\n');
}

/** Prints an error the way a person can act on it, and returns the exit code. */
export function reportError(error: unknown): number {
  if (error instanceof AltoError) {
    process.stderr.write(`${red('error')}: ${error.detail} ${dim(`(${error.code}, ${error.status})`)}\n`);
    return error.status === 0 ? 2 : 1;
  }
  process.stderr.write(`${red('error')}: ${(error as Error).message}\n`);
  return 1;
}
