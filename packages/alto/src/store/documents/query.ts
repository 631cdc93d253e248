/**
 * @module store/documents/query
 * The query language of the document store: M3O's (`age >= 18 and user.name == 'Jo'`) plus
 * `or`, `not`, parentheses, `in [...]` and `exists`. A tokenizer and a recursive-descent parser
 * turn the text into a small AST that each adapter compiles to SQL with bound parameters, and
 * that `matches()` evaluates in memory (for watches) with the same semantics as the SQL.
 *
 * Grammar (keywords are case-insensitive):
 *   query      := or END
 *   or         := and ("or" and)*
 *   and        := unary ("and" unary)*
 *   unary      := "not" unary | "(" or ")" | comparison
 *   comparison := path ( operator value | "not"? "in" list | "not"? "exists" )
 *   path       := name ("." name)*         name := [A-Za-z_][A-Za-z0-9_]*
 *   operator   := "==" | "!=" | "<" | "<=" | ">" | ">="
 *   value      := 'string' | "string" | number | true | false | null
 *   list       := "[" (value ("," value)*)? "]"
 *
 * Semantics: `==` matches only a value of the same JSON type (the number 1 is not the string
 * '1' nor `true`); `== null` matches null or a missing field; `!=` is the exact negation of
 * `==`; `<`, `<=`, `>`, `>=` compare numbers with numbers and strings with strings only.
 */
import { errors } from '../../kit/errors.js';

export type Scalar = string | number | boolean | null;
export type ComparisonOperator = '==' | '!=' | '<' | '<=' | '>' | '>=';

export type Filter =
  | { kind: 'and'; items: Filter[] }
  | { kind: 'or'; items: Filter[] }
  | { kind: 'not'; item: Filter }
  | { kind: 'compare'; path: string[]; operator: ComparisonOperator; value: Scalar }
  | { kind: 'in'; path: string[]; values: Scalar[] }
  | { kind: 'exists'; path: string[] };

/** Longest query text accepted, in characters. */
export const MAX_QUERY_LENGTH = 10_000;
/** Deepest nesting of parentheses and `not`, so a hostile query cannot exhaust the stack. */
export const MAX_QUERY_DEPTH = 32;
/** Most values in one `in [...]` list. */
export const MAX_IN_VALUES = 1_000;
/** Most comparisons in one query. */
export const MAX_COMPARISONS = 256;
/** Deepest field path (`a.b.c` is 3). */
export const MAX_PATH_DEPTH = 16;
/** Longest field path, in characters. */
export const MAX_PATH_LENGTH = 256;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'exists', 'true', 'false', 'null']);

/**
 * Checks a field path given outside a query (`orderBy`, an index's field) and splits it.
 * Paths end up inside SQL expressions (an expression index only serves a query that spells the
 * same expression), so only plain names joined by dots are allowed.
 */
export function parseFieldPath(text: string, what = 'field'): string[] {
  const rule = `use names of letters, digits and _ (not starting with a digit) joined by dots, e.g. "user.age"; at most ${MAX_PATH_DEPTH} parts and ${MAX_PATH_LENGTH} characters`;
  if (text.length === 0) throw errors.badRequest(`${what}: is empty; ${rule}`);
  if (text.length > MAX_PATH_LENGTH) throw errors.badRequest(`${what}: is ${text.length} characters long; ${rule}`);
  const parts = text.split('.');
  if (parts.length > MAX_PATH_DEPTH) throw errors.badRequest(`${what}: "${text}" has ${parts.length} parts; ${rule}`);
  for (const part of parts) {
    if (!NAME.test(part)) throw errors.badRequest(`${what}: "${text}" is not a field path; ${rule}`);
  }
  return parts;
}

type TokenKind = 'name' | 'string' | 'number' | 'operator' | 'punctuation' | 'end';

interface Token {
  kind: TokenKind;
  /** The source text of the token (for strings, with quotes). */
  text: string;
  /** The decoded value of a string or number token. */
  value?: string | number;
  /** Zero-based offset in the query. */
  start: number;
}

/** A syntax error at a place in the query, reported with a 1-based character position. */
function syntaxError(position: number, message: string): Error {
  return errors.badRequest(`query: at position ${position + 1}: ${message}`);
}

function describe(token: Token): string {
  switch (token.kind) {
    case 'end':
      return 'end of query';
    case 'name':
      return KEYWORDS.has(token.text.toLowerCase()) ? `keyword "${token.text}"` : `name "${token.text}"`;
    case 'string':
      return `string ${truncate(token.text)}`;
    case 'number':
      return `number ${truncate(token.text)}`;
    default:
      return `"${token.text}"`;
  }
}

function truncate(text: string): string {
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const NAME_AT = /[A-Za-z_][A-Za-z0-9_]*/y;
const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '/': '/', '\\': '\\', "'": "'", '"': '"' };

export function tokenize(query: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  while (at < query.length) {
    const char = query[at];
    if (char === ' ' || char === '\t' || char === '\n' || char === '\r') {
      at++;
      continue;
    }
    const start = at;
    if (char === "'" || char === '"') {
      let value = '';
      at++;
      for (;;) {
        if (at >= query.length) throw syntaxError(start, `the string starting here has no closing ${char}`);
        const next = query[at];
        if (next === char) break;
        if (next === '\\') {
          const escaped = query[at + 1];
          if (escaped === undefined) throw syntaxError(at, `expected a character after "\\", found end of query`);
          if (escaped === 'u') {
            const hex = query.slice(at + 2, at + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw syntaxError(at, 'expected 4 hexadecimal digits after "\\u"');
            value += String.fromCharCode(parseInt(hex, 16));
            at += 6;
            continue;
          }
          const decoded = ESCAPES[escaped];
          if (decoded === undefined) throw syntaxError(at, `"\\${escaped}" is not an escape; use \\\\, \\', \\", \\n, \\t or \\uXXXX`);
          value += decoded;
          at += 2;
          continue;
        }
        value += next;
        at++;
      }
      at++;
      tokens.push({ kind: 'string', text: query.slice(start, at), value, start });
      continue;
    }
    if ((char >= '0' && char <= '9') || (char === '-' && /[0-9]/.test(query[at + 1] ?? ''))) {
      NUMBER.lastIndex = at;
      const match = NUMBER.exec(query);
      if (!match) throw syntaxError(at, `"${char}" does not start a number`);
      at += match[0].length;
      if (/[A-Za-z0-9_.]/.test(query[at] ?? '')) throw syntaxError(at, `unexpected "${query[at]}" right after the number ${match[0]}`);
      const value = Number(match[0]);
      if (!Number.isFinite(value)) throw syntaxError(start, `the number ${truncate(match[0])} is too large`);
      tokens.push({ kind: 'number', text: match[0], value, start });
      continue;
    }
    if (/[A-Za-z_]/.test(char)) {
      NAME_AT.lastIndex = at;
      const match = NAME_AT.exec(query)!;
      at += match[0].length;
      tokens.push({ kind: 'name', text: match[0], start });
      continue;
    }
    const two = query.slice(at, at + 2);
    if (two === '==' || two === '!=' || two === '<=' || two === '>=') {
      tokens.push({ kind: 'operator', text: two, start });
      at += 2;
      continue;
    }
    if (char === '<' || char === '>') {
      tokens.push({ kind: 'operator', text: char, start });
      at++;
      continue;
    }
    if (char === '=') throw syntaxError(at, '"=" is not an operator; use "==" to compare');
    if (two === '&&') throw syntaxError(at, '"&&" is not an operator; use "and"');
    if (two === '||') throw syntaxError(at, '"||" is not an operator; use "or"');
    if (char === '!') throw syntaxError(at, '"!" is not an operator; use "!=" or "not"');
    if ('()[],.'.includes(char)) {
      tokens.push({ kind: 'punctuation', text: char, start });
      at++;
      continue;
    }
    const shown = char.codePointAt(0)! < 32 ? `the control character U+${char.charCodeAt(0).toString(16).padStart(4, '0')}` : `"${char}"`;
    throw syntaxError(at, `unexpected ${shown}; a query compares fields with values, e.g. age >= 18 and name == 'Jo'`);
  }
  tokens.push({ kind: 'end', text: '', start: query.length });
  return tokens;
}

class Parser {
  private position = 0;
  private depth = 0;
  private comparisons = 0;

  constructor(private readonly tokens: Token[]) {}

  private get current(): Token {
    return this.tokens[this.position];
  }

  /** The current token's kind, read afresh (a getter's type would stay narrowed after advance()). */
  private currentKind(): TokenKind {
    return this.current.kind;
  }

  private isKeyword(token: Token, keyword: string): boolean {
    return token.kind === 'name' && token.text.toLowerCase() === keyword;
  }

  private advance(): Token {
    const token = this.current;
    if (token.kind !== 'end') this.position++;
    return token;
  }

  private expected(what: string, after?: Token): Error {
    const context = after ? ` after ${describe(after)}` : '';
    return syntaxError(this.current.start, `expected ${what}${context}, found ${describe(this.current)}`);
  }

  parseQuery(): Filter {
    if (this.current.kind === 'end') throw syntaxError(0, 'the query is empty; leave "query" out to read every record');
    const filter = this.parseOr();
    if (this.currentKind() !== 'end') {
      throw this.expected('"and", "or" or the end of the query', this.tokens[this.position - 1]);
    }
    return filter;
  }

  private parseOr(): Filter {
    const items = [this.parseAnd()];
    while (this.isKeyword(this.current, 'or')) {
      const keyword = this.advance();
      if (this.current.kind === 'end' || this.current.text === ')') throw this.expected('a condition', keyword);
      items.push(this.parseAnd());
    }
    return items.length === 1 ? items[0] : { kind: 'or', items };
  }

  private parseAnd(): Filter {
    const items = [this.parseUnary()];
    while (this.isKeyword(this.current, 'and')) {
      const keyword = this.advance();
      if (this.current.kind === 'end' || this.current.text === ')') throw this.expected('a condition', keyword);
      items.push(this.parseUnary());
    }
    return items.length === 1 ? items[0] : { kind: 'and', items };
  }

  private nest<T>(start: number, parse: () => T): T {
    if (++this.depth > MAX_QUERY_DEPTH) {
      throw syntaxError(start, `the query nests deeper than ${MAX_QUERY_DEPTH} levels of parentheses and "not"`);
    }
    try {
      return parse();
    } finally {
      this.depth--;
    }
  }

  private parseUnary(): Filter {
    const token = this.current;
    if (this.isKeyword(token, 'not')) {
      this.advance();
      return this.nest(token.start, () => ({ kind: 'not', item: this.parseUnary() }));
    }
    if (token.kind === 'punctuation' && token.text === '(') {
      this.advance();
      return this.nest(token.start, () => {
        if (this.current.text === ')' && this.current.kind === 'punctuation') throw this.expected('a condition', token);
        const inner = this.parseOr();
        if (this.current.kind !== 'punctuation' || this.current.text !== ')') {
          throw syntaxError(this.current.start, `expected ")" to close the "(" at position ${token.start + 1}, found ${describe(this.current)}`);
        }
        this.advance();
        return inner;
      });
    }
    return this.parseComparison();
  }

  private parsePath(): string[] {
    const first = this.current;
    if (first.kind !== 'name') throw this.expected('a field name (or "not", "(")', this.tokens[this.position - 1]);
    if (KEYWORDS.has(first.text.toLowerCase())) {
      throw syntaxError(first.start, `expected a field name, found keyword "${first.text}"`);
    }
    const parts = [this.advance().text];
    while (this.current.kind === 'punctuation' && this.current.text === '.') {
      const dot = this.advance();
      if (this.currentKind() !== 'name') throw this.expected('a field name', dot);
      parts.push(this.advance().text);
    }
    const text = parts.join('.');
    if (parts.length > MAX_PATH_DEPTH || text.length > MAX_PATH_LENGTH) {
      throw syntaxError(first.start, `the field path is longer than ${MAX_PATH_DEPTH} parts or ${MAX_PATH_LENGTH} characters`);
    }
    return parts;
  }

  private parseComparison(): Filter {
    const start = this.current.start;
    const path = this.parsePath();
    if (++this.comparisons > MAX_COMPARISONS) throw syntaxError(start, `the query has more than ${MAX_COMPARISONS} comparisons`);
    const pathToken = this.tokens[this.position - 1];
    let negate = false;
    if (this.isKeyword(this.current, 'not')) {
      this.advance();
      negate = true;
      if (!this.isKeyword(this.current, 'in') && !this.isKeyword(this.current, 'exists')) {
        throw this.expected('"in" or "exists"', this.tokens[this.position - 1]);
      }
    }
    let filter: Filter;
    if (this.isKeyword(this.current, 'exists')) {
      this.advance();
      filter = { kind: 'exists', path };
    } else if (this.isKeyword(this.current, 'in')) {
      const keyword = this.advance();
      filter = { kind: 'in', path, values: this.parseList(keyword) };
    } else if (!negate && this.current.kind === 'operator') {
      const operator = this.advance();
      const value = this.parseValue(operator);
      const op = operator.text as ComparisonOperator;
      if (op !== '==' && op !== '!=' && typeof value !== 'number' && typeof value !== 'string') {
        throw syntaxError(
          this.tokens[this.position - 1].start,
          `"${op}" compares numbers or strings, not ${value === null ? 'null' : 'booleans'}; use "==" or "!="`,
        );
      }
      filter = { kind: 'compare', path, operator: op, value };
    } else {
      throw this.expected('an operator (==, !=, <, <=, >, >=), "in" or "exists"', pathToken);
    }
    return negate ? { kind: 'not', item: filter } : filter;
  }

  private parseValue(after: Token): Scalar {
    const token = this.current;
    if (token.kind === 'string' || token.kind === 'number') {
      this.advance();
      return token.value!;
    }
    if (token.kind === 'name') {
      const word = token.text.toLowerCase();
      if (word === 'true' || word === 'false' || word === 'null') {
        this.advance();
        return word === 'null' ? null : word === 'true';
      }
      throw syntaxError(
        token.start,
        `expected a value after ${describe(after)}, found name "${token.text}"; quote strings: '${truncate(token.text)}'`,
      );
    }
    throw this.expected('a value', after);
  }

  private parseList(keyword: Token): Scalar[] {
    const open = this.current;
    if (open.kind !== 'punctuation' || open.text !== '[') throw this.expected('"[" to start a list of values', keyword);
    this.advance();
    const values: Scalar[] = [];
    if (this.current.kind === 'punctuation' && this.current.text === ']') {
      this.advance();
      return values;
    }
    for (;;) {
      values.push(this.parseValue(this.tokens[this.position - 1]));
      if (values.length > MAX_IN_VALUES) throw syntaxError(open.start, `the list has more than ${MAX_IN_VALUES} values`);
      const separator = this.current;
      if (separator.kind === 'punctuation' && separator.text === ']') {
        this.advance();
        return values;
      }
      if (separator.kind !== 'punctuation' || separator.text !== ',') {
        throw syntaxError(separator.start, `expected "," or "]" in the list started at position ${open.start + 1}, found ${describe(separator)}`);
      }
      this.advance();
    }
  }
}

/** Parses a query, or throws a 400 whose detail gives the position and what was expected. */
export function parseQuery(query: string): Filter {
  if (query.length > MAX_QUERY_LENGTH) {
    throw errors.badRequest(`query: is ${query.length} characters long; at most ${MAX_QUERY_LENGTH}`);
  }
  return new Parser(tokenize(query)).parseQuery();
}

/** The value at `path` in a record, or undefined when a part of the path is missing. */
export function valueAt(record: unknown, path: string[]): unknown {
  let value = record;
  for (const part of path) {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function equals(actual: unknown, expected: Scalar): boolean {
  if (expected === null) return actual === null || actual === undefined;
  return typeof actual === typeof expected && actual === expected;
}

function compareOrdered(actual: unknown, operator: ComparisonOperator, expected: Scalar): boolean {
  if (typeof actual !== typeof expected || (typeof actual !== 'number' && typeof actual !== 'string')) return false;
  const a = actual as number | string;
  const b = expected as number | string;
  switch (operator) {
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    default:
      return a >= b;
  }
}

/**
 * Whether a record matches a filter, with the semantics the SQL adapters implement. String
 * ordering here is by UTF-16 code units; SQLite orders by bytes and PostgreSQL by the database
 * collation, which agree for ASCII.
 */
export function matches(record: unknown, filter: Filter): boolean {
  switch (filter.kind) {
    case 'and':
      return filter.items.every((item) => matches(record, item));
    case 'or':
      return filter.items.some((item) => matches(record, item));
    case 'not':
      return !matches(record, filter.item);
    case 'exists':
      return valueAt(record, filter.path) !== undefined;
    case 'in': {
      const actual = valueAt(record, filter.path);
      return filter.values.some((value) => equals(actual, value));
    }
    case 'compare': {
      const actual = valueAt(record, filter.path);
      if (filter.operator === '==') return equals(actual, filter.value);
      if (filter.operator === '!=') return !equals(actual, filter.value);
      return compareOrdered(actual, filter.operator, filter.value);
    }
  }
}
