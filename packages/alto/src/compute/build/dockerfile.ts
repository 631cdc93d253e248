/**
 * @module compute/build/dockerfile
 * Reads a Dockerfile into typed instructions with their line numbers, using `dockerfile-ast`
 * (the parser of the Docker language server) for the grammar: instructions, continuation lines,
 * flags, heredocs and parser directives. Everything Alto cannot build (an instruction, a flag, a
 * platform other than linux/amd64) is a 400 naming the line, before anything runs.
 *
 * Words are expanded later, when the build knows the ARG and ENV values in effect at each line
 * (`expandWords`, `expandWord`): `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}` and
 * their forms without the colon, single and double quotes, and `\` escapes, as Docker's shell
 * lexer does them.
 */
import { DockerfileParser, type Instruction as AstInstruction } from 'dockerfile-ast';
import { errors } from '../../kit/errors.js';

/** Largest Dockerfile read. */
export const MAX_DOCKERFILE_BYTES = 256 * 1024;
/** Instructions at most in one Dockerfile. */
export const MAX_INSTRUCTIONS = 1_000;

/** A command in exec form (`["a", "b"]`) or shell form (the text after the keyword). */
export type CommandForm = { exec: string[] } | { shell: string };

export interface Heredoc {
  name: string;
  content: string;
}

interface Located {
  /** 1-based line of the instruction's keyword. */
  line: number;
  /** The instruction as written (first line), for the build log. */
  text: string;
}

export type Instruction = Located &
  (
    | { kind: 'FROM'; image: string; alias?: string }
    | { kind: 'ARG'; args: { name: string; value?: string }[] }
    | { kind: 'RUN'; command: CommandForm; heredocs: Heredoc[]; network?: 'none' | 'default' }
    | { kind: 'COPY' | 'ADD'; sources: string[]; destination: string; from?: string; chown?: string; chmod?: string; heredocs: Heredoc[] }
    | { kind: 'ENV' | 'LABEL'; raw: string }
    | { kind: 'WORKDIR' | 'USER' | 'STOPSIGNAL'; raw: string }
    | { kind: 'EXPOSE' | 'VOLUME'; raw: string }
    | { kind: 'ENTRYPOINT' | 'CMD'; command: CommandForm }
    | { kind: 'SHELL'; shell: string[] }
    | { kind: 'HEALTHCHECK'; test: string[]; options: Record<string, string> }
  );

export interface Stage {
  /** 0-based position among the stages. */
  index: number;
  alias?: string;
  from: Extract<Instruction, { kind: 'FROM' }>;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  /** ARGs before the first FROM: usable in FROM lines only (and again in a stage after a bare `ARG NAME`). */
  globalArgs: Extract<Instruction, { kind: 'ARG' }>[];
  stages: Stage[];
}

const FLAGS: Record<string, string[]> = {
  FROM: ['platform'],
  RUN: ['network'],
  COPY: ['from', 'chown', 'chmod'],
  ADD: ['chown', 'chmod'],
  HEALTHCHECK: ['interval', 'timeout', 'start-period', 'start-interval', 'retries'],
};

const SUPPORTED = new Set(['FROM', 'ARG', 'RUN', 'COPY', 'ADD', 'ENV', 'LABEL', 'WORKDIR', 'USER', 'STOPSIGNAL', 'EXPOSE', 'VOLUME', 'ENTRYPOINT', 'CMD', 'SHELL', 'HEALTHCHECK']);

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function refuse(line: number, detail: string): Error {
  return errors.badRequest(`Dockerfile line ${line}: ${detail}`);
}

/** Parses and checks a Dockerfile; every problem is a 400 naming its line. */
export function parseDockerfile(text: string): ParsedDockerfile {
  if (Buffer.byteLength(text) > MAX_DOCKERFILE_BYTES) throw errors.payloadTooLarge(`the Dockerfile is larger than ${MAX_DOCKERFILE_BYTES / 1024} KiB`);
  if (text.includes('\0')) throw errors.badRequest('the Dockerfile contains a NUL byte');
  const document = DockerfileParser.parse(text);
  for (const directive of document.getDirectives()) {
    const name = directive.getName().toLowerCase();
    if (name === 'escape' && directive.getValue() !== '\\')
      throw refuse(directive.getRange().start.line + 1, 'only the default escape character \\ is supported');
  }
  const instructions = document.getInstructions();
  if (instructions.length > MAX_INSTRUCTIONS) throw errors.badRequest(`the Dockerfile has ${instructions.length} instructions; at most ${MAX_INSTRUCTIONS}`);
  const lines = text.split('\n');
  const globalArgs: Extract<Instruction, { kind: 'ARG' }>[] = [];
  const stages: Stage[] = [];
  for (const node of instructions) {
    const instruction = readInstruction(node, lines);
    if (instruction.kind === 'FROM') {
      if (instruction.alias && stages.some((stage) => stage.alias === instruction.alias))
        throw refuse(instruction.line, `the stage name "${instruction.alias}" is used twice`);
      stages.push({ index: stages.length, alias: instruction.alias, from: instruction, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.kind !== 'ARG') throw refuse(instruction.line, `${instruction.kind} before the first FROM; only ARG may come before it`);
      globalArgs.push(instruction);
    } else stages.at(-1)!.instructions.push(instruction);
  }
  if (stages.length === 0) throw errors.badRequest('the Dockerfile has no FROM instruction');
  return { globalArgs, stages };
}

function readInstruction(node: AstInstruction, lines: string[]): Instruction {
  const keyword = node.getKeyword().toUpperCase();
  const line = node.getInstructionRange().start.line + 1;
  const text = (lines[line - 1] ?? keyword).trim().slice(0, 200);
  if (!SUPPORTED.has(keyword)) {
    throw refuse(line, `${keyword} is not supported (Alto builds FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, EXPOSE, ENTRYPOINT, CMD, LABEL, VOLUME, STOPSIGNAL, HEALTHCHECK and SHELL)`);
  }
  const flags = readFlags(node, keyword, line);
  const content = (node.getArgumentsContent() ?? '').trim();
  const raw = stripFlags(content, node).trim();
  const located = { line, text };
  const need = () => {
    if (!raw) throw refuse(line, `${keyword} needs arguments`);
  };
  switch (keyword) {
    case 'FROM': {
      need();
      if (flags.platform !== undefined && flags.platform !== 'linux/amd64')
        throw refuse(line, `FROM --platform=${flags.platform}: Alto builds linux/amd64 images only`);
      const words = raw.split(/\s+/);
      if (words.length === 3 && words[1].toUpperCase() === 'AS') {
        if (!/^[a-z][a-z0-9_.-]*$/.test(words[2].toLowerCase())) throw refuse(line, `"${words[2]}" is not a stage name (letters, digits, _ . -, starting with a letter)`);
        return { ...located, kind: 'FROM', image: words[0], alias: words[2].toLowerCase() };
      }
      if (words.length !== 1) throw refuse(line, 'FROM takes an image and, optionally, AS <name>');
      return { ...located, kind: 'FROM', image: words[0] };
    }
    case 'ARG': {
      need();
      const args = splitWords(raw, line).map((word) => {
        const equals = word.indexOf('=');
        const name = equals < 0 ? word : word.slice(0, equals);
        if (!NAME.test(name)) throw refuse(line, `"${name}" is not an ARG name`);
        return equals < 0 ? { name } : { name, value: word.slice(equals + 1) };
      });
      return { ...located, kind: 'ARG', args };
    }
    case 'RUN': {
      need();
      const network = flags.network;
      if (network !== undefined && network !== 'none' && network !== 'default') throw refuse(line, `RUN --network=${network}: only none or default`);
      const heredocs = heredocsOf(node, lines);
      return { ...located, kind: 'RUN', command: commandForm(raw, heredocs.length > 0), heredocs, ...(network ? { network } : {}) };
    }
    case 'COPY':
    case 'ADD': {
      need();
      const heredocs = heredocsOf(node, lines);
      // The first line holds the sources and destination; heredoc bodies follow it.
      const firstLine = heredocs.length > 0 ? raw.split('\n')[0] : raw;
      const json = parseJsonArray(firstLine);
      const words = json ?? splitWords(firstLine, line, false);
      if (words.length < 2) throw refuse(line, `${keyword} needs at least one source and a destination`);
      return {
        ...located,
        kind: keyword,
        sources: words.slice(0, -1),
        destination: words.at(-1)!,
        heredocs,
        ...(flags.from !== undefined ? { from: flags.from } : {}),
        ...(flags.chown !== undefined ? { chown: flags.chown } : {}),
        ...(flags.chmod !== undefined ? { chmod: flags.chmod } : {}),
      };
    }
    case 'ENV':
    case 'LABEL':
    case 'WORKDIR':
    case 'USER':
    case 'STOPSIGNAL':
    case 'EXPOSE':
    case 'VOLUME':
      need();
      return { ...located, kind: keyword, raw };
    case 'ENTRYPOINT':
    case 'CMD':
      need();
      return { ...located, kind: keyword, command: commandForm(raw, false) };
    case 'SHELL': {
      const shell = parseJsonArray(raw);
      if (!shell || shell.length === 0) throw refuse(line, 'SHELL takes the JSON form: SHELL ["/bin/sh", "-c"]');
      return { ...located, kind: 'SHELL', shell };
    }
    case 'HEALTHCHECK': {
      need();
      const [first, ...rest] = raw.split(/\s+/);
      if (first.toUpperCase() === 'NONE') {
        if (rest.length > 0 || Object.keys(flags).length > 0) throw refuse(line, 'HEALTHCHECK NONE takes nothing else');
        return { ...located, kind: 'HEALTHCHECK', test: ['NONE'], options: {} };
      }
      if (first.toUpperCase() !== 'CMD') throw refuse(line, 'HEALTHCHECK takes CMD <command> or NONE');
      const command = commandForm(raw.slice(first.length).trim(), false);
      if ('exec' in command ? command.exec.length === 0 : !command.shell) throw refuse(line, 'HEALTHCHECK CMD needs a command');
      const test = 'exec' in command ? ['CMD', ...command.exec] : ['CMD-SHELL', command.shell];
      return { ...located, kind: 'HEALTHCHECK', test, options: flags };
    }
  }
  throw refuse(line, `${keyword} is not supported`);
}

function readFlags(node: AstInstruction, keyword: string, line: number): Record<string, string> {
  const getFlags = (node as unknown as { getFlags?: () => { getName(): string; getValue(): string | null }[] }).getFlags;
  const found: Record<string, string> = {};
  if (!getFlags) return found;
  for (const flag of getFlags.call(node)) {
    const name = flag.getName();
    if (!(FLAGS[keyword] ?? []).includes(name)) throw refuse(line, `${keyword} --${name} is not supported${FLAGS[keyword]?.length ? ` (${keyword} takes ${FLAGS[keyword].map((known) => `--${known}`).join(', ')})` : ''}`);
    const value = flag.getValue();
    if (value === null || value === '') throw refuse(line, `${keyword} --${name} needs a value (--${name}=...)`);
    found[name] = value;
  }
  return found;
}

/** The arguments without the leading `--flag=value` words the parser already read. */
function stripFlags(content: string, node: AstInstruction): string {
  const getFlags = (node as unknown as { getFlags?: () => unknown[] }).getFlags;
  if (!getFlags || getFlags.call(node).length === 0) return content;
  let rest = content;
  for (;;) {
    const match = /^--[A-Za-z-]+(=\S*)?\s*/.exec(rest);
    if (!match) return rest;
    rest = rest.slice(match[0].length);
  }
}

function heredocsOf(node: AstInstruction, lines: string[]): Heredoc[] {
  const read = (node as unknown as { getHeredocs?: () => { getName(): string; getContentRange(): { start: { line: number }; end: { line: number; character: number } } | null }[] }).getHeredocs;
  if (!read) return [];
  return read.call(node).map((heredoc) => {
    const range = heredoc.getContentRange();
    if (!range) return { name: heredoc.getName(), content: '' };
    const body = lines.slice(range.start.line, range.end.line + 1);
    return { name: heredoc.getName(), content: body.join('\n') + '\n' };
  });
}

/** `["a", "b"]` as an array of strings, or undefined when the text is not one (then it is shell form). */
function parseJsonArray(text: string): string[] | undefined {
  if (!text.startsWith('[')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value as string[];
  } catch {
    // Not JSON: Docker reads it as shell form too.
  }
  return undefined;
}

function commandForm(raw: string, heredoc: boolean): CommandForm {
  if (!heredoc) {
    const exec = parseJsonArray(raw);
    if (exec) return { exec };
  }
  return { shell: raw };
}

/**
 * Splits instruction arguments into words on unquoted whitespace, removing quotes and escapes;
 * with `env`, variables are expanded too (not inside single quotes).
 */
export function splitWords(text: string, line: number, removeQuotes = true, env?: Map<string, string>): string[] {
  const words: string[] = [];
  let current = '';
  let started = false;
  let quote: '"' | "'" | undefined;
  for (let index = 0; index < text.length; index++) {
    const char = text[index];
    if (quote === "'") {
      if (char === "'") {
        quote = undefined;
        if (!removeQuotes) current += char;
      } else current += char;
      continue;
    }
    if (char === '\\' && index + 1 < text.length) {
      const next = text[index + 1];
      if (!removeQuotes) current += char + next;
      else if (quote === '"' && !['"', '\\', '$'].includes(next)) current += char + next;
      else current += next;
      started = true;
      index++;
      continue;
    }
    if (char === '$' && env) {
      const expanded = expandVariable(text, index, env, line);
      current += expanded.value;
      index = expanded.end - 1;
      started = true;
      continue;
    }
    if (quote === '"') {
      if (char === '"') {
        quote = undefined;
        if (!removeQuotes) current += char;
      } else current += char;
      continue;
    }
    if (char === '"' || char === "'") {
      quote = char;
      started = true;
      if (!removeQuotes) current += char;
      continue;
    }
    if (/\s/.test(char)) {
      if (started) words.push(current);
      current = '';
      started = false;
      continue;
    }
    current += char;
    started = true;
  }
  if (quote) throw refuse(line, `unterminated ${quote} quote`);
  if (started) words.push(current);
  return words;
}

/** Expands the variable starting at `text[start]` (a `$`); answers its value and where it ends. */
function expandVariable(text: string, start: number, env: Map<string, string>, line: number): { value: string; end: number } {
  const next = text[start + 1];
  if (next === '{') {
    const close = text.indexOf('}', start + 2);
    if (close < 0) throw refuse(line, 'a ${ without its }');
    const body = text.slice(start + 2, close);
    const match = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?$/s.exec(body);
    if (!match) throw refuse(line, `\${${body}} is not a variable Alto can expand (\${NAME}, \${NAME:-default}, \${NAME:+alternative})`);
    const [, name, operator, word = ''] = match;
    const value = env.get(name);
    const set = operator?.startsWith(':') ? value !== undefined && value !== '' : value !== undefined;
    if (operator?.endsWith('-')) return { value: set ? value! : expandWord(word, env, line), end: close + 1 };
    if (operator?.endsWith('+')) return { value: set ? expandWord(word, env, line) : '', end: close + 1 };
    return { value: value ?? '', end: close + 1 };
  }
  const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(start + 1));
  if (!match) return { value: '$', end: start + 1 };
  return { value: env.get(match[0]) ?? '', end: start + 1 + match[0].length };
}

/** One word: variables expanded, quotes removed, nothing split. */
export function expandWord(text: string, env: Map<string, string>, line: number): string {
  return splitWords(`"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`, line, true, env)[0] ?? '';
}

/** Words of an instruction's arguments, variables expanded. */
export function expandWords(text: string, env: Map<string, string>, line: number): string[] {
  return splitWords(text, line, true, env);
}

/** `KEY=value KEY2="two words"` (or the old `KEY value with spaces`) of ENV and LABEL, expanded. */
export function keyValuePairs(raw: string, env: Map<string, string>, line: number, keyword: string): [string, string][] {
  const words = splitWords(raw, line, true, env);
  if (words.length > 0 && !words[0].includes('=')) {
    if (words.length < 2) throw refuse(line, `${keyword} ${words[0]} needs a value`);
    return [[words[0], words.slice(1).join(' ')]];
  }
  return words.map((word) => {
    const equals = word.indexOf('=');
    if (equals <= 0) throw refuse(line, `${keyword} takes KEY=value pairs, not "${word}"`);
    return [word.slice(0, equals), word.slice(equals + 1)];
  });
}
