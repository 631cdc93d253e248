/**
 * SQL lives in `store/` only: every other source file of Alto reaches data through a port that
 * `openStores` opened. This reads each `.ts` file under `src` outside `src/store/` (tests aside)
 * with the TypeScript parser and fails, naming file and line, on SQL in a string (CREATE TABLE,
 * ALTER TABLE, INSERT INTO, DELETE FROM, UPDATE x SET, SELECT ... FROM, ...), on a
 * `.prepare(`, `.exec(` or `.query(` call given SQL text, on better-sqlite3's `.pragma(`, and on an
 * import of the better-sqlite3 or pg driver. Comments are not code, so the words in them (the db
 * block's query language, prose about selecting) never count, and a method that is merely
 * called `prepare` (the microVM driver's) is not SQL unless it is given SQL.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import ts from 'typescript';

const SOURCE_ROOT = fileURLToPath(new URL('..', import.meta.url));
const STORE_ROOT = join(SOURCE_ROOT, 'store');

/** SQL statements as they appear inside a string; keywords upper case, as every SQL in Alto is written. */
const SQL_IN_STRINGS: Array<[name: string, pattern: RegExp]> = [
  ['CREATE TABLE/INDEX', /\bCREATE\s+(?:TEMP(?:ORARY)?\s+|UNIQUE\s+|VIRTUAL\s+)?(?:TABLE|INDEX|TRIGGER|VIEW)\b/],
  ['ALTER TABLE', /\bALTER\s+TABLE\b/],
  ['DROP TABLE/INDEX', /\bDROP\s+(?:TABLE|INDEX|TRIGGER|VIEW)\b/],
  ['INSERT INTO', /\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b/],
  ['DELETE FROM', /\bDELETE\s+FROM\b/],
  ['UPDATE ... SET', /\bUPDATE\s+[\w."]+\s+SET\b/],
  ['SELECT ... FROM', /\bSELECT\b[\s\S]*?\bFROM\b/],
];

/** What a statement handed to a driver begins with, in either case. */
const SQL_START =
  /^\s*(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|VACUUM|ANALYZE|REPLACE|TRUNCATE|COPY|LISTEN|UNLISTEN|NOTIFY|SET\s+\w+\s*(?:=|TO\b))\b/i;

/** Methods of better-sqlite3's Database and pg's Pool and Client that take SQL text. */
const SQL_METHODS = new Set(['prepare', 'exec', 'query']);

/** Database drivers: only the store's adapters open connections. */
const DRIVERS = /^(?:better-sqlite3|pg|pg-[\w-]+)$/;

interface SqlFinding {
  line: number;
  what: string;
  text: string;
}

function isStringLike(node: ts.Node): node is ts.StringLiteral | ts.NoSubstitutionTemplateLiteral | ts.TemplateExpression {
  return ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateExpression(node);
}

/** The text a call's argument starts with: a string, a template's head, or the left of a `+`. */
function leadingText(node: ts.Expression): string | undefined {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isTemplateExpression(node)) return node.head.text;
  if (ts.isParenthesizedExpression(node)) return leadingText(node.expression);
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) return leadingText(node.left);
  return undefined;
}

/** The SQL in one file's code (its comments left out), with the line of each. */
function findSql(fileName: string, source: string): SqlFinding[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const findings: SqlFinding[] = [];
  const lineOf = (position: number) => file.getLineAndCharacterOfPosition(position).line + 1;
  const excerpt = (text: string) => text.replace(/\s+/g, ' ').trim().slice(0, 80);

  // Each literal piece is matched on its source text, so a finding names the keyword's own line.
  const searchPiece = (start: number, raw: string) => {
    for (const [what, pattern] of SQL_IN_STRINGS) {
      const match = pattern.exec(raw);
      if (match) {
        findings.push({ line: lineOf(start + match.index), what, text: excerpt(raw.slice(match.index)) });
        return;
      }
    }
  };

  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) {
      searchPiece(node.getStart(file), node.getText(file));
    } else if (ts.isTemplateExpression(node)) {
      searchPiece(node.head.getStart(file), node.head.getText(file));
      for (const span of node.templateSpans) searchPiece(span.literal.getStart(file), span.literal.getText(file));
    } else if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && node.arguments.length > 0) {
      const method = node.expression.name.text;
      const argument = node.arguments[0];
      const text = leadingText(argument);
      // A statement the string patterns find is reported once, by them, when the visit reaches it.
      const foundAsString = isStringLike(argument) && SQL_IN_STRINGS.some(([, pattern]) => pattern.test(argument.getText(file)));
      if (method === 'pragma' && text !== undefined) {
        findings.push({ line: lineOf(node.getStart(file)), what: 'better-sqlite3 .pragma()', text: excerpt(text) });
      } else if (SQL_METHODS.has(method) && text !== undefined && SQL_START.test(text) && !foundAsString) {
        findings.push({ line: lineOf(node.getStart(file)), what: `SQL given to .${method}()`, text: excerpt(text) });
      }
    } else if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      if (DRIVERS.test(node.moduleSpecifier.text)) {
        findings.push({ line: lineOf(node.getStart(file)), what: 'database driver import', text: node.moduleSpecifier.text });
      }
      return;
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return findings.sort((a, b) => a.line - b.line);
}

function sourceFilesOutsideStore(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (path !== STORE_ROOT) files.push(...sourceFilesOutsideStore(path));
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
      files.push(path);
    }
  }
  return files;
}

test('the patterns find SQL in code and leave alone the same words elsewhere', () => {
  const sample = [
    "import Database from 'better-sqlite3';", // 1
    "const row = db.prepare('SELECT digest FROM image_tags WHERE reference = ?').get(reference);", // 2
    'db.exec(`CREATE TABLE things (', // 3
    '  id TEXT PRIMARY KEY)`);', // 4
    "await pool.query('select 1');", // 5
    "await client.query(`UPDATE alto_settings SET value = $1`, [value]);", // 6
    'const sql = `INSERT OR IGNORE INTO image_users (image_digest, user) VALUES (?, ?)`;', // 7
    "db.pragma('journal_mode = WAL');", // 8
    '// SELECT the rows FROM the table, then DELETE FROM it', // 9
    '/** The query language: select * from where, and UPDATE x SET y. */', // 10
    'await this.prepare(layout, baseDisk, spec);', // 11
    "const message = 'the caller may delete from disk the blobs it selects from the list';", // 12
    "const found = /x/.exec('set -e; echo');", // 13
    "const result = await search.query('name == \"SELECT\"');", // 14
  ].join('\n');
  assert.deepEqual(
    findSql('sample.ts', sample).map((finding) => `${finding.line} ${finding.what}`),
    [
      '1 database driver import',
      '2 SELECT ... FROM',
      '3 CREATE TABLE/INDEX',
      '5 SQL given to .query()',
      '6 UPDATE ... SET',
      '7 INSERT INTO',
      '8 better-sqlite3 .pragma()',
    ],
  );
});

test('no SQL outside src/store', () => {
  const files = sourceFilesOutsideStore(SOURCE_ROOT);
  assert.ok(files.length > 50, `only ${files.length} source files found under ${SOURCE_ROOT}`);
  assert.ok(files.some((file) => file.endsWith(`compute${sep}sandbox${sep}microvm.ts`)), 'the walk reaches compute/');
  const report: string[] = [];
  for (const file of files) {
    const name = relative(SOURCE_ROOT, file);
    for (const finding of findSql(name, readFileSync(file, 'utf8'))) {
      report.push(`src/${name.split(sep).join('/')}:${finding.line}: ${finding.what}: ${finding.text}`);
    }
  }
  assert.ok(report.length === 0, `SQL belongs behind a port in src/store (store/<port>/port.ts and its adapters):\n${report.join('\n')}`);
});
