/**
 * @module blocks/search/query
 * The search query language, M3O's plus full text: `name == 'John'`, `age >= 18`,
 * `name == 'Joh*'` (wildcard), `AND`/`OR` (any case) with parentheses, and bare terms
 * (`coffee`, `'flat white'`, `espres*`) matched against the document's text. Adjacent terms
 * without an operator are joined by AND. A tokenizer and a recursive-descent parser; every
 * error names the character position (1-based) where it went wrong.
 */
import { errors } from '../../kit/errors.js';
import type { QueryNode } from '../../store/search/port.js';
import { trimEnd } from '../../kit/text.js';

type Token =
  | { type: 'word'; text: string; position: number }
  | { type: 'string'; text: string; position: number }
  | { type: 'number'; value: number; text: string; position: number }
  | { type: 'operator'; text: '==' | '!=' | '>=' | '<=' | '>' | '<'; position: number }
  | { type: '(' | ')' | 'and' | 'or' | 'end'; position: number };

const FIELD_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const WORD_CHARACTER = /[\p{L}\p{N}_.*\-@#+]/u;
const NUMBER_PATTERN = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;
export const MAX_QUERY_LENGTH = 4096;

function fail(position: number, what: string): never {
  throw errors.badRequest(`query: at position ${position + 1}, ${what}`);
}

function describe(token: Token): string {
  switch (token.type) {
    case 'end':
      return 'the end of the query';
    case 'word':
    case 'string':
    case 'number':
    case 'operator':
      return JSON.stringify(token.text);
    default:
      return JSON.stringify(token.type === 'and' || token.type === 'or' ? token.type.toUpperCase() : token.type);
  }
}

export function tokenize(query: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  while (at < query.length) {
    const char = query[at];
    if (/\s/.test(char)) {
      at += 1;
    } else if (char === '(' || char === ')') {
      tokens.push({ type: char, position: at });
      at += 1;
    } else if (char === "'" || char === '"') {
      const start = at;
      let text = '';
      at += 1;
      for (;;) {
        if (at >= query.length) fail(start, `the string starting here has no closing ${char}`);
        if (query[at] === '\\' && at + 1 < query.length) {
          text += query[at + 1];
          at += 2;
        } else if (query[at] === char) {
          at += 1;
          break;
        } else {
          text += query[at];
          at += 1;
        }
      }
      tokens.push({ type: 'string', text, position: start });
    } else if ('=!<>'.includes(char)) {
      const two = query.slice(at, at + 2);
      if (two === '==' || two === '!=' || two === '>=' || two === '<=') {
        tokens.push({ type: 'operator', text: two, position: at });
        at += 2;
      } else if (char === '>' || char === '<') {
        tokens.push({ type: 'operator', text: char, position: at });
        at += 1;
      } else {
        fail(at, `${JSON.stringify(char)} is not an operator; use ==, !=, >=, <=, > or <`);
      }
    } else if (WORD_CHARACTER.test(char)) {
      const start = at;
      while (at < query.length && WORD_CHARACTER.test(query[at])) at += 1;
      const text = query.slice(start, at);
      const lower = text.toLowerCase();
      if (lower === 'and' || lower === 'or') tokens.push({ type: lower, position: start });
      else if (NUMBER_PATTERN.test(text)) tokens.push({ type: 'number', value: Number(text), text, position: start });
      else tokens.push({ type: 'word', text, position: start });
    } else {
      fail(at, `unexpected character ${JSON.stringify(char)}; quote values, e.g. name == 'John'`);
    }
  }
  tokens.push({ type: 'end', position: query.length });
  return tokens;
}

/** A term matched against the text; `*` at its end makes its last word a prefix. */
function textTerm(text: string, position: number): QueryNode {
  const prefix = text.endsWith('*');
  const phrase = trimEnd(text, '*');
  if (phrase.includes('*')) fail(position, `${JSON.stringify(text)}: in a text term, * may only end the term (e.g. espres*)`);
  if (!/[\p{L}\p{N}]/u.test(phrase)) fail(position, `${JSON.stringify(text)} has no letter or digit to search for`);
  return { kind: 'text', phrase, prefix };
}

/** Deepest nesting of parentheses: deeper ones are refused, not recursed into until the stack runs out. */
export const MAX_QUERY_DEPTH = 32;

class Parser {
  private index = 0;
  private depth = 0;
  constructor(private readonly tokens: Token[]) {}

  private peek(): Token {
    return this.tokens[this.index];
  }

  private next(): Token {
    return this.tokens[this.index++];
  }

  parse(): QueryNode {
    const node = this.parseOr();
    const token = this.peek();
    if (token.type !== 'end') {
      fail(token.position, token.type === ')' ? 'this ")" has no matching "("' : `expected AND, OR or the end of the query, found ${describe(token)}`);
    }
    return node;
  }

  private parseOr(): QueryNode {
    let left = this.parseAnd();
    while (this.peek().type === 'or') {
      this.next();
      left = { kind: 'or', left, right: this.parseAnd() };
    }
    return left;
  }

  private parseAnd(): QueryNode {
    let left = this.parsePrimary();
    for (;;) {
      const token = this.peek();
      if (token.type === 'and') {
        this.next();
        left = { kind: 'and', left, right: this.parsePrimary() };
      } else if (token.type === 'word' || token.type === 'string' || token.type === 'number' || token.type === '(') {
        left = { kind: 'and', left, right: this.parsePrimary() };
      } else {
        return left;
      }
    }
  }

  private parsePrimary(): QueryNode {
    const token = this.next();
    if (token.type === '(') {
      if (++this.depth > MAX_QUERY_DEPTH) fail(token.position, `the query nests deeper than ${MAX_QUERY_DEPTH} levels of parentheses`);
      const inner = this.parseOr();
      this.depth -= 1;
      const close = this.next();
      if (close.type !== ')') fail(close.position, `expected ")" to close the "(" at position ${token.position + 1}, found ${describe(close)}`);
      return inner;
    }
    if (token.type === 'string' || token.type === 'number') return textTerm(token.text, token.position);
    if (token.type === 'word') {
      if (this.peek().type !== 'operator') return textTerm(token.text, token.position);
      return this.parseComparison(token);
    }
    fail(token.position, `expected a field comparison, a search term or "(", found ${describe(token)}`);
  }

  private parseComparison(fieldToken: Extract<Token, { type: 'word' }>): QueryNode {
    if (!FIELD_PATTERN.test(fieldToken.text)) {
      fail(fieldToken.position, `${JSON.stringify(fieldToken.text)} is not a field name; use letters, digits and _, with . for nested fields (e.g. address.city)`);
    }
    const field = fieldToken.text.split('.');
    const operator = this.next() as Extract<Token, { type: 'operator' }>;
    const value = this.next();
    if (value.type === 'number') {
      if (operator.text === '==' || operator.text === '!=') {
        return { kind: 'equals', field, value: value.value, negated: operator.text === '!=', wildcard: false };
      }
      return { kind: 'range', field, operator: operator.text, value: value.value };
    }
    if (value.type === 'string') {
      if (operator.text !== '==' && operator.text !== '!=') {
        fail(value.position, `${operator.text} compares numbers only; write a number, e.g. ${fieldToken.text} ${operator.text} 18`);
      }
      return { kind: 'equals', field, value: value.text, negated: operator.text === '!=', wildcard: value.text.includes('*') };
    }
    fail(value.position, `expected a value after ${operator.text}: a quoted string ('John') or a number, found ${describe(value)}`);
  }
}

/** The parsed query, or undefined for an empty one (which matches every document). */
export function parseQuery(query: string): QueryNode | undefined {
  if (query.length > MAX_QUERY_LENGTH) throw errors.badRequest(`query: is ${query.length} characters long; the most is ${MAX_QUERY_LENGTH}`);
  const tokens = tokenize(query);
  if (tokens.length === 1) return undefined;
  return new Parser(tokens).parse();
}
