/**
 * @module compute/templates/compose
 * Reads a template folder's `compose.yaml` (the Compose Specification) and optional `alto.yaml`
 * into a checked plan of apps. Pure: no files, no network; other files of the folder come
 * through `readFile`. Every problem is collected with its file, key path and line, and all of
 * them are thrown at once as one 400, so a template author fixes the template in one round.
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { errors } from '../../kit/errors.js';
import { APP_DEFAULTS } from '../apps/spec.js';
import { checkComposeSchema } from './compose-schema.js';

export interface TemplateParameter {
  /** As written in alto.yaml, [A-Za-z_][A-Za-z0-9_]*. */
  name: string;
  description?: string;
  default?: string;
  /** The value is a secret: stored in the project's secrets, never printed. */
  secret: boolean;
  /** Generate a random value of this many characters when none is given (secrets usually). */
  generate?: number;
}

/** A named volume mounted at `path` in the container. */
export interface StackVolume {
  name: string;
  path: string;
}

export interface StackService {
  /** The compose service name (lower-case letters, digits, dashes; 1-30 chars). */
  name: string;
  image?: string;
  /** Context folder relative to the template folder (normalised, never escaping it), and the dockerfile inside it. */
  build?: { context: string; dockerfile?: string; args: Record<string, string> };
  entrypoint?: string[];
  command?: string[];
  /** `environment` plus `env_file` contents merged (environment wins), interpolated. */
  environment: Record<string, string>;
  /** The container port served: the first `ports` entry's container port, else the first `expose`. */
  port?: number;
  /** HTTP (public through the edge) or raw TCP; set only when the service has a port. */
  protocol?: 'http' | 'tcp';
  volumes: StackVolume[];
  /** Services this one depends on, each with its compose condition. */
  dependsOn: { service: string; condition: string }[];
  /** Compose healthcheck with its test as an argv array and intervals in seconds. */
  healthcheck?: { test: string[]; intervalSeconds?: number; timeoutSeconds?: number; retries?: number; startPeriodSeconds?: number };
  /** deploy.replicas (default 1). */
  replicas: number;
  /** deploy.resources.limits.memory in MiB. */
  memoryMiB?: number;
  /** compose `shm_size` in MiB: /dev/shm holds up to the app's memory, so this only warns when it asks for more. */
  shmMiB?: number;
  /** deploy.resources.limits.cpus. */
  cpus?: number;
  /** 'no' | 'always' | 'on-failure' | 'unless-stopped' as given (default 'no'). */
  restart: string;
  /** The top-level secrets the service sees as files, /run/secrets/<target>. */
  secrets: StackSecretFile[];
  /** The fields of the service's `x-alto` map, as plain JSON. */
  extensions: Record<string, unknown>;
  /** stop_signal as given (SIGINT...). */
  stopSignal?: string;
  /** stop_grace_period in seconds. */
  stopGraceSeconds?: number;
}

/** A top-level compose secret and where its value comes from. */
export type StackSecret =
  /** A file of the template folder, with its content. */
  | { name: string; file: string; value: string }
  /** A template variable (a parameter or a --set value), with its value as this reading gives it. */
  | { name: string; environment: string; value: string }
  /** A secret the project has already, by its key (`external: true`, `name:`). */
  | { name: string; external: string };

/** A service's use of a top-level secret: the file /run/secrets/<target>. */
export interface StackSecretFile {
  /** The top-level secret's name. */
  source: string;
  /** The file's name under /run/secrets (the source's name unless given). */
  target: string;
  /** Permission bits; 0444 unless given, as Docker. */
  mode: number;
  uid?: number;
  gid?: number;
}

export interface StackPlan {
  /** In dependency order: every service after the ones it depends on, file order where free. */
  services: StackService[];
  parameters: TemplateParameter[];
  /** The public service (alto.yaml `public:`, else the first service with `ports`), with its domain. */
  public?: { service: string; domain?: string };
  /** Every parameter's final value (given, default or generated), so the caller can store the secret ones. */
  values: Record<string, string>;
  /** The top-level secrets, in file order. */
  secrets: StackSecret[];
  /** Unknown keys that were ignored, each named with its file, path and line. */
  warnings: string[];
  /** What the template is, from alto.yaml `description` (for a catalogue). */
  description?: string;
}

export interface TemplateSource {
  /** Text of compose.yaml. */
  compose: string;
  /** Text of alto.yaml, if any. */
  alto?: string;
  /** Reads another file of the template folder by its relative path (for env_file); undefined when missing. */
  readFile?(path: string): string | undefined;
  /** The same file's bytes (for secrets' files); readFile's text when not given. */
  readBytes?(path: string): Buffer | undefined;
}

const MAX_COMPOSE_BYTES = 256 * 1024;
const MAX_ALTO_BYTES = 64 * 1024;
const MAX_SERVICES = 20;
/** A secret's file: as much as an Alto secret holds. */
const MAX_SECRET_FILE_BYTES = 64 * 1024;
/** A top-level secret's name: the stack keeps it as the secret <stack>-<name>. */
const SECRET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
/** An Alto secret's key (external secrets). */
const SECRET_KEY = /^[A-Za-z0-9_.-]{1,128}$/;
/** A file's name under /run/secrets. */
const SECRET_TARGET = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$/;
const SERVICE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?$/;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const CONDITIONS = ['service_started', 'service_healthy', 'service_completed_successfully'];
const RESTART_POLICIES = /^(?:no|always|unless-stopped|on-failure(?::\d+)?)$/;
const BIND_MOUNT_REFUSED = "a template's data lives in named volumes (volumes: name:/path)";

/** Service keys that would reach outside the app's sandbox, and why each is refused. */
const REFUSED_SERVICE_KEYS: Record<string, string> = {
  devices: 'host devices are not reachable from an app sandbox',
  cap_add: 'extra kernel capabilities are not granted to apps',
  userns_mode: 'every app runs in its own user namespace',
  security_opt: 'security options are fixed by the sandbox',
  sysctls: 'kernel parameters are fixed by the sandbox',
  tmpfs: 'tmpfs mounts are not offered; write to a named volume (volumes: name:/path) or the container filesystem',
};

/** Service keys that are accepted and ignored, each with a warning saying why. */
const IGNORED_SERVICE_KEYS: Record<string, string> = {
  container_name: 'Alto names the app after the service',
  hostname: 'services reach each other through their links (<SERVICE>_SERVICE_HOST and _PORT)',
  labels: 'labels are not used',
  logging: 'Alto keeps the logs of every app',
  extra_hosts: 'host entries are not added',
  networks: 'a service reaches the services it depends on or names (host:port or their link variables) through links',
};

/** Problems and warnings collected across both files. */
interface Report {
  problems: string[];
  warnings: string[];
}

/** A map entry with its key node, for line numbers. */
interface Entry {
  key: string;
  keyNode: Node;
  value: Node | null;
}

/** One parsed YAML file with the means to name a place in it. */
class TemplateFile {
  readonly lines = new LineCounter();
  readonly document: Document;

  constructor(
    readonly name: string,
    readonly text: string,
    private readonly report: Report,
  ) {
    this.document = parseDocument(text, { lineCounter: this.lines, merge: true, prettyErrors: false });
    for (const error of this.document.errors) {
      report.problems.push(`${name} line ${this.lines.linePos(error.pos[0]).line}: YAML syntax: ${error.message.split('\n')[0]}`);
    }
  }

  where(node: Node | null | undefined, path: string): string {
    const range = node?.range;
    const line = range ? ` line ${this.lines.linePos(range[0]).line}` : '';
    return `${this.name}${line}: ${path}`;
  }

  problem(node: Node | null | undefined, path: string, message: string): void {
    this.report.problems.push(`${this.where(node, path)}: ${message}`);
  }

  warn(node: Node | null | undefined, path: string, message: string): void {
    this.report.warnings.push(`${this.where(node, path)}: ${message}`);
  }

  /** The node an alias points at; other nodes as they are. */
  resolve(node: unknown): Node | null {
    if (isAlias(node)) return (node.resolve(this.document) as Node | undefined) ?? null;
    return (node as Node | null) ?? null;
  }

  /** The entries of a map, with `<<: *anchor` merges expanded (explicit keys win). */
  entries(node: Node | null): Entry[] {
    const map = this.resolve(node);
    if (!isMap(map)) return [];
    const explicit: Entry[] = [];
    const merged: Entry[] = [];
    for (const pair of map.items) {
      const keyNode = pair.key as Node;
      const key = isScalar(keyNode) ? keyNode.value : undefined;
      if (typeof key === 'symbol' || key === '<<') {
        const sources = this.resolve(pair.value as Node);
        for (const source of isSeq(sources) ? sources.items : [sources]) merged.push(...this.entries(source as Node));
        continue;
      }
      explicit.push({ key: String(key), keyNode, value: this.resolve(pair.value) });
    }
    const seen = new Set(explicit.map((entry) => entry.key));
    return [...explicit, ...merged.filter((entry) => !seen.has(entry.key) && seen.add(entry.key))];
  }

  /** The items of a sequence, aliases resolved. */
  items(node: Node | null): Node[] {
    const seq = this.resolve(node);
    return isSeq(seq) ? seq.items.map((item) => this.resolve(item) as Node) : [];
  }

  /** A scalar's text (numbers and booleans written out); undefined, with a problem, for anything else. */
  scalar(node: Node | null, path: string): string | undefined {
    if (isScalar(node) && node.value !== null && node.value !== undefined && typeof node.value !== 'object') {
      return String(node.value);
    }
    this.problem(node, path, isScalar(node) ? 'needs a value' : 'must be a single value, not a list or map');
    return undefined;
  }

  json(node: Node | null): unknown {
    return node ? node.toJSON() : null;
  }
}

/** The variables compose.yaml interpolation reads: the user's values, then parameter values. */
class Variables {
  /** Every name a template looked up, so a `--set` of a name nothing uses can be refused. */
  readonly used = new Set<string>();

  constructor(
    private readonly given: Record<string, string>,
    private readonly parameterValues: Record<string, string>,
  ) {}

  lookup(name: string): string | undefined {
    this.used.add(name);
    return Object.hasOwn(this.given, name) ? this.given[name] : this.parameterValues[name];
  }

  /**
   * Expands compose interpolation: `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
   * `${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`, `${VAR+other}` and `$$`. `$(NAME)` is
   * not compose syntax: it stays, for Alto to expand inside the instance's environment.
   */
  interpolate(text: string, fail: (message: string) => void): string {
    let out = '';
    let index = 0;
    while (index < text.length) {
      const dollar = text.indexOf('$', index);
      if (dollar < 0) break;
      out += text.slice(index, dollar);
      const next = text[dollar + 1];
      if (next === '$') {
        out += '$';
        index = dollar + 2;
      } else if (next === '{') {
        const close = matchingBrace(text, dollar + 1);
        if (close < 0) {
          fail(`unclosed \${ in "${text}"`);
          return text;
        }
        out += this.expandBraced(text.slice(dollar + 2, close), fail);
        index = close + 1;
      } else {
        const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(dollar + 1))?.[0];
        if (name) {
          out += this.required(name, fail);
          index = dollar + 1 + name.length;
        } else {
          out += '$';
          index = dollar + 1;
        }
      }
    }
    return out + text.slice(index);
  }

  private expandBraced(inner: string, fail: (message: string) => void): string {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(inner);
    if (!match) {
      fail(`\${${inner}} is not a valid interpolation (write \${NAME}, \${NAME:-default} or \${NAME:?message})`);
      return '';
    }
    const [, name, operator, argument = ''] = match;
    if (!operator) return this.required(name, fail);
    const value = this.lookup(name);
    const unset = operator.startsWith(':') ? !value : value === undefined;
    switch (operator.replace(':', '')) {
      case '-':
        return unset ? this.interpolate(argument, fail) : (value as string);
      case '+':
        return unset ? '' : this.interpolate(argument, fail);
      default:
        if (unset) fail(`${name} is required: ${argument ? this.interpolate(argument, fail) : 'it is not set'}`);
        return value ?? '';
    }
  }

  private required(name: string, fail: (message: string) => void): string {
    const value = this.lookup(name);
    if (value === undefined) {
      fail(`\${${name}} is not set: give it with --set ${name}=..., or declare it with a default under parameters in alto.yaml`);
      return '';
    }
    return value;
  }
}

/** Index of the `}` closing the `{` at `open`, counting nested braces; -1 when unclosed. */
function matchingBrace(text: string, open: number): number {
  let depth = 0;
  for (let index = open; index < text.length; index++) {
    if (text[index] === '{') depth++;
    else if (text[index] === '}' && --depth === 0) return index;
  }
  return -1;
}

/** Splits a command line into words as a shell would for simple words and quotes; undefined on an unclosed quote. */
function splitCommand(line: string): string[] | undefined {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let index = 0; index < line.length; index++) {
    const char = line[index];
    if (quote) {
      if (char === quote) quote = undefined;
      else if (char === '\\' && quote === '"' && '"\\$`'.includes(line[index + 1] ?? '')) word += line[++index];
      else word += char;
    } else if (char === '"' || char === "'") {
      quote = char;
      inWord = true;
    } else if (char === '\\' && index + 1 < line.length) {
      word += line[++index];
      inWord = true;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += char;
      inWord = true;
    }
  }
  if (quote) return undefined;
  if (inWord) words.push(word);
  return words;
}

/** Compose byte strings ('512m', '1g', '256M', '1.5gb') or a number of bytes, in MiB rounded up; undefined when unreadable. */
function memoryInMiB(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$/i.exec(value.trim());
  if (!match) return undefined;
  const power = { '': 0, b: 0, k: 1, m: 2, g: 3 }[match[2].toLowerCase() as '' | 'b' | 'k' | 'm' | 'g'];
  const bytes = Number(match[1]) * 1024 ** power;
  return Math.ceil(bytes / 1024 ** 2);
}

/** Compose durations ('10s', '1m30s', '500ms') in seconds; undefined when unreadable. */
function durationInSeconds(value: string): number | undefined {
  const unitSeconds: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  if (!/^(?:\d+(?:\.\d+)?(?:us|ms|s|m|h))+$/.test(value)) return undefined;
  let seconds = 0;
  for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d+)?)(us|ms|s|m|h)/g)) seconds += Number(amount) * unitSeconds[unit];
  return seconds;
}

/** A path inside the template folder, normalised; undefined when absolute or leaving the folder. */
function insideFolder(path: string): string | undefined {
  if (path.startsWith('/') || path.startsWith('~')) return undefined;
  const normal = posix.normalize(path).replace(/\/+$/, '') || '.';
  return normal === '..' || normal.startsWith('../') ? undefined : normal;
}

function isBindSource(source: string): boolean {
  return source === '.' || source === '..' || /^(?:\/|\.\/|\.\.\/|~)/.test(source);
}

/**
 * Parses and checks a template; `values` are the --set KEY=VALUE values given by the user.
 * Throws errors.badRequest naming every problem (file, path and line) at once.
 */
export function planStack(source: TemplateSource, values: Record<string, string> = {}): StackPlan {
  if (Buffer.byteLength(source.compose) > MAX_COMPOSE_BYTES) {
    throw errors.badRequest(`the template is not valid: compose.yaml is larger than ${MAX_COMPOSE_BYTES / 1024} KiB`);
  }
  if (source.alto !== undefined && Buffer.byteLength(source.alto) > MAX_ALTO_BYTES) {
    throw errors.badRequest(`the template is not valid: alto.yaml is larger than ${MAX_ALTO_BYTES / 1024} KiB`);
  }
  const report: Report = { problems: [], warnings: [] };
  const compose = new TemplateFile('compose.yaml', source.compose, report);
  const alto = source.alto === undefined ? undefined : new TemplateFile('alto.yaml', source.alto, report);
  throwProblems(report);

  const settings = alto ? readAltoFile(alto) : { parameters: [], protocols: new Map<string, { protocol: 'http' | 'tcp'; node: Node | null }>() };
  const parameterValues: Record<string, string> = {};
  for (const parameter of settings.parameters) {
    const value = Object.hasOwn(values, parameter.name)
      ? values[parameter.name]
      : parameter.default ?? (parameter.generate ? randomBytes(parameter.generate).toString('base64url').slice(0, parameter.generate) : undefined);
    if (value === undefined) {
      report.problems.push(`alto.yaml: parameters.${parameter.name}: has no value: give it with --set ${parameter.name}=... (or a default in alto.yaml)`);
    } else {
      parameterValues[parameter.name] = value;
    }
  }
  const variables = new Variables(values, parameterValues);
  const { services, secrets } = readComposeFile(compose, variables, source);
  checkComposeSchema(compose, compose.document.contents as Node | null, (text) => variables.interpolate(text, () => undefined), (path) => reportedAt(report, compose.name, path));

  const parameterNames = settings.parameters.map((parameter) => parameter.name);
  for (const name of Object.keys(values)) {
    if (!parameterNames.includes(name) && !variables.used.has(name)) {
      report.problems.push(`--set ${name}: the template has no parameter ${name}; its parameters: ${parameterNames.join(', ') || '(none)'}`);
    }
  }

  const byName = new Map(services.map((service) => [service.service.name, service]));
  const publicService = pickPublic(settings, services, alto);
  for (const [name, { protocol, node }] of settings.protocols) {
    const entry = byName.get(name);
    if (!entry) alto?.problem(node, `services.${name}`, `compose.yaml has no service ${name}`);
    else if (entry.service.port === undefined) alto?.problem(node, `services.${name}.protocol`, `service ${name} has no port (give it ports or expose)`);
    else entry.service.protocol = protocol;
  }
  for (const { service } of services) {
    if (service.port !== undefined && !service.protocol) service.protocol = service.name === publicService?.service ? 'http' : 'tcp';
  }
  const ordered = dependencyOrder(compose, services);
  throwProblems(report);
  return {
    services: ordered,
    parameters: settings.parameters,
    ...(publicService ? { public: publicService } : {}),
    values: parameterValues,
    secrets,
    warnings: inFileOrder(report.warnings),
    ...(settings.description ? { description: settings.description } : {}),
  };
}

/** Whether a problem was reported in `file` at `path`, inside it, or at a place holding it. */
function reportedAt(report: Report, file: string, path: string): boolean {
  const within = (inner: string, outer: string) => inner === outer || inner.startsWith(`${outer}.`) || inner.startsWith(`${outer}[`);
  return report.problems.some((problem) => {
    const match = /^(\S+)(?: line \d+)?: ([^ :]+): /.exec(problem);
    return match !== null && match[1] === file && (within(match[2], path) || within(path, match[2]));
  });
}

function throwProblems(report: Report): void {
  if (report.problems.length) throw errors.badRequest(`the template is not valid: ${inFileOrder(report.problems).join('; ')}`);
}

/** Messages sorted as an author reads them: compose.yaml by line, then alto.yaml by line, then the rest. */
function inFileOrder(messages: string[]): string[] {
  const place = (message: string): [number, number] => {
    const match = /^(compose|alto)\.yaml(?: line (\d+))?/.exec(message);
    return match ? [match[1] === 'compose' ? 0 : 1, Number(match[2] ?? 0)] : [2, 0];
  };
  return messages
    .map((message) => ({ message, place: place(message) }))
    .sort((a, b) => a.place[0] - b.place[0] || a.place[1] - b.place[1])
    .map(({ message }) => message);
}

interface AltoSettings {
  parameters: TemplateParameter[];
  publicService?: { name: string; node: Node | null };
  domain?: string;
  description?: string;
  protocols: Map<string, { protocol: 'http' | 'tcp'; node: Node | null }>;
}

function readAltoFile(file: TemplateFile): AltoSettings {
  const settings: AltoSettings = { parameters: [], protocols: new Map() };
  const root = file.resolve(file.document.contents as Node | null);
  if (root !== null && !isMap(root)) {
    file.problem(root, '(top level)', 'must be a map of parameters, public, domain and services');
    return settings;
  }
  for (const { key, keyNode, value } of file.entries(root)) {
    if (key === 'parameters') {
      if (value !== null && !isMap(value)) file.problem(keyNode, key, 'must be a map of parameter name to its description, default, secret and generate');
      for (const parameter of file.entries(value)) {
        const read = readParameter(file, parameter);
        if (read) settings.parameters.push(read);
      }
    } else if (key === 'public') {
      const name = file.scalar(value ?? keyNode, key);
      if (name !== undefined) settings.publicService = { name, node: keyNode };
    } else if (key === 'description') {
      settings.description = file.scalar(value ?? keyNode, key);
    } else if (key === 'domain') {
      const domain = file.scalar(value ?? keyNode, key)?.toLowerCase();
      if (domain !== undefined && !HOST_NAME.test(domain)) file.problem(keyNode, key, `"${domain}" is not a host name`);
      else settings.domain = domain;
    } else if (key === 'services') {
      if (value !== null && !isMap(value)) file.problem(keyNode, key, 'must be a map of service name to its settings');
      for (const service of file.entries(value)) {
        for (const setting of file.entries(service.value)) {
          const path = `services.${service.key}.${setting.key}`;
          if (setting.key !== 'protocol') {
            file.warn(setting.keyNode, path, 'unknown key, ignored (known: protocol)');
            continue;
          }
          const protocol = file.scalar(setting.value ?? setting.keyNode, path);
          if (protocol === 'http' || protocol === 'tcp') settings.protocols.set(service.key, { protocol, node: setting.keyNode });
          else if (protocol !== undefined) file.problem(setting.keyNode, path, `must be http or tcp, not "${protocol}"`);
        }
      }
    } else {
      file.warn(keyNode, key, 'unknown key, ignored (known: description, parameters, public, domain, services)');
    }
  }
  return settings;
}

function readParameter(file: TemplateFile, { key: name, keyNode, value }: Entry): TemplateParameter | undefined {
  const path = `parameters.${name}`;
  if (!VARIABLE_NAME.test(name)) {
    file.problem(keyNode, path, 'a parameter name is letters, digits and underscores, not starting with a digit');
    return undefined;
  }
  const parameter: TemplateParameter = { name, secret: false };
  if (value !== null && !isMap(value)) {
    file.problem(keyNode, path, 'must be a map of description, default, secret and generate');
    return undefined;
  }
  for (const field of file.entries(value)) {
    const fieldPath = `${path}.${field.key}`;
    const node = field.value ?? field.keyNode;
    if (field.key === 'description') parameter.description = file.scalar(node, fieldPath);
    else if (field.key === 'default') parameter.default = file.scalar(node, fieldPath);
    else if (field.key === 'secret') {
      if (isScalar(node) && typeof node.value === 'boolean') parameter.secret = node.value;
      else file.problem(field.keyNode, fieldPath, 'must be true or false');
    } else if (field.key === 'generate') {
      if (isScalar(node) && Number.isInteger(node.value) && (node.value as number) >= 8 && (node.value as number) <= 128) {
        parameter.generate = node.value as number;
      } else file.problem(field.keyNode, fieldPath, 'must be a number of characters from 8 to 128');
    } else file.warn(field.keyNode, fieldPath, 'unknown key, ignored (known: description, default, secret, generate)');
  }
  if (parameter.generate !== undefined && parameter.default !== undefined) {
    file.problem(keyNode, path, 'has both default and generate: a generated value needs no default');
  }
  return parameter;
}

/** A service as read, with the node of each dependency for line numbers. */
interface ServiceEntry {
  service: StackService;
  keyNode: Node;
  hasPorts: boolean;
  dependencyNodes: Map<string, Node>;
}

function readComposeFile(file: TemplateFile, variables: Variables, source: TemplateSource): { services: ServiceEntry[]; secrets: StackSecret[] } {
  const root = file.resolve(file.document.contents as Node | null);
  if (!isMap(root)) {
    file.problem(root, '(top level)', 'compose.yaml must be a map with services');
    return { services: [], secrets: [] };
  }
  const entries = file.entries(root);
  const volumes = new Set<string>();
  const secrets: StackSecret[] = [];
  for (const { key, keyNode, value } of entries) {
    if (key === 'volumes') {
      if (value !== null && !isMap(value)) file.problem(keyNode, key, `must be a map of ${key} names`);
      for (const declared of file.entries(value)) volumes.add(declared.key);
    } else if (key === 'secrets') {
      if (value !== null && !isMap(value)) file.problem(keyNode, key, 'must be a map of secret names to file, environment or external');
      for (const declared of file.entries(value)) {
        const secret = readSecret(file, variables, source, declared);
        if (secret) secrets.push(secret);
      }
    } else if (key === 'networks') {
      file.warn(keyNode, key, 'ignored: a service reaches the services it depends on or names (host:port or their link variables) through links');
    } else if (key !== 'services' && key !== 'name' && key !== 'version' && !key.startsWith('x-')) {
      file.warn(keyNode, key, 'unknown top-level key, ignored');
    }
  }
  const servicesEntry = entries.find((entry) => entry.key === 'services');
  const serviceEntries = file.entries(servicesEntry?.value ?? null);
  if (!servicesEntry || !isMap(servicesEntry.value)) {
    file.problem(servicesEntry?.keyNode ?? root, 'services', 'compose.yaml needs a services map');
  } else if (serviceEntries.length === 0 || serviceEntries.length > MAX_SERVICES) {
    file.problem(servicesEntry.keyNode, 'services', `a template has 1 to ${MAX_SERVICES} services, not ${serviceEntries.length}`);
  }
  const reader = new ServiceReader(file, variables, source.readFile, volumes, new Set(secrets.map((secret) => secret.name)));
  return { services: serviceEntries.slice(0, MAX_SERVICES).map((entry) => reader.read(entry)), secrets };
}

/**
 * A top-level secret: `file:` (a file of the template folder, at most 64 KiB of UTF-8 text),
 * `environment:` (a template variable) or `external: true` (a secret the project has, by `name:`).
 */
function readSecret(file: TemplateFile, variables: Variables, source: TemplateSource, { key: name, keyNode, value }: Entry): StackSecret | undefined {
  const path = `secrets.${name}`;
  if (!SECRET_NAME.test(name)) {
    file.problem(keyNode, path, 'a secret name is 1-100 letters, digits and ._-, starting with a letter or digit');
    return undefined;
  }
  if (!isMap(value)) {
    file.problem(keyNode, path, 'must be a map with file, environment or external');
    return undefined;
  }
  const fields = new Map(file.entries(value).map((entry) => [entry.key, entry]));
  for (const [key, entry] of fields) {
    if (['driver', 'driver_opts', 'labels', 'template_driver'].includes(key)) file.warn(entry.keyNode, `${path}.${key}`, 'ignored: Alto keeps the value in its own secrets');
    else if (!['file', 'environment', 'external', 'name'].includes(key)) file.warn(entry.keyNode, `${path}.${key}`, 'unknown secret key, ignored (known: file, environment, external, name)');
  }
  const externalField = fields.get('external');
  const external = externalField ? isScalar(externalField.value) && externalField.value.value === true : false;
  if (externalField && !(isScalar(externalField.value) && typeof externalField.value.value === 'boolean')) {
    file.problem(externalField.keyNode, `${path}.external`, 'must be true or false');
    return undefined;
  }
  const sources = ['file', 'environment'].filter((key) => fields.has(key));
  if (external) {
    if (sources.length > 0) {
      file.problem(keyNode, path, `an external secret has no ${sources[0]}: it is a secret of the project already`);
      return undefined;
    }
    const nameField = fields.get('name');
    const key = nameField ? file.scalar(nameField.value ?? nameField.keyNode, `${path}.name`) : name;
    if (key === undefined) return undefined;
    if (!SECRET_KEY.test(key)) {
      file.problem(nameField?.keyNode ?? keyNode, `${path}.name`, `"${key}" is not a secret's key (letters, digits and ._-)`);
      return undefined;
    }
    return { name, external: key };
  }
  if (fields.has('name')) file.warn(fields.get('name')!.keyNode, `${path}.name`, 'ignored: the stack keeps the secret as <stack>-<secret>; name: names the project\'s secret only with external: true');
  if (sources.length !== 1) {
    file.problem(keyNode, path, sources.length === 0 ? 'needs file (a file of the template folder), environment (a parameter or --set variable) or external: true' : 'has both file and environment: give one');
    return undefined;
  }
  const field = fields.get(sources[0])!;
  const at = `${path}.${sources[0]}`;
  const given = file.scalar(field.value ?? field.keyNode, at);
  if (given === undefined) return undefined;
  const text = isScalar(field.value) && typeof field.value.value === 'string' ? variables.interpolate(given, (message) => file.problem(field.keyNode, at, message)) : given;
  if (sources[0] === 'environment') {
    if (!VARIABLE_NAME.test(text)) {
      file.problem(field.keyNode, at, `"${text}" is not a variable name`);
      return undefined;
    }
    const variable = variables.lookup(text);
    if (variable === undefined) {
      file.problem(field.keyNode, at, `${text} is not set: give it with --set ${text}=..., or declare it under parameters in alto.yaml`);
      return undefined;
    }
    return { name, environment: text, value: variable };
  }
  const inside = insideFolder(text);
  if (inside === undefined || inside === '.') {
    file.problem(field.keyNode, at, `secret file ${text} must be a file inside the template folder`);
    return undefined;
  }
  const bytes = source.readBytes ? source.readBytes(inside) : (() => {
    const read = source.readFile?.(inside);
    return read === undefined ? undefined : Buffer.from(read);
  })();
  if (bytes === undefined) {
    file.problem(field.keyNode, at, `secret file ${text} is missing from the template folder (symbolic links are not followed)`);
    return undefined;
  }
  if (bytes.length > MAX_SECRET_FILE_BYTES) {
    file.problem(field.keyNode, at, `secret file ${text} is larger than ${MAX_SECRET_FILE_BYTES / 1024} KiB`);
    return undefined;
  }
  let content: string;
  try {
    content = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    file.problem(field.keyNode, at, `secret file ${text} is not UTF-8 text (an Alto secret holds text; base64 binary content and decode it in the service)`);
    return undefined;
  }
  return { name, file: inside, value: content };
}

/** Reads one compose service into a StackService, reporting problems as it goes. */
class ServiceReader {
  constructor(
    private readonly file: TemplateFile,
    private readonly variables: Variables,
    private readonly readFile: TemplateSource['readFile'],
    private readonly volumeNames: Set<string>,
    private readonly secretNames: Set<string>,
  ) {}

  read({ key: name, keyNode, value }: Entry): ServiceEntry {
    const file = this.file;
    const service: StackService = { name, environment: {}, volumes: [], dependsOn: [], replicas: 1, restart: 'no', secrets: [], extensions: {} };
    const entry: ServiceEntry = { service, keyNode, hasPorts: false, dependencyNodes: new Map() };
    const path = `services.${name}`;
    if (!SERVICE_NAME.test(name)) {
      file.problem(keyNode, path, 'a service name is 1-30 lower-case letters, digits and dashes, not starting or ending with a dash (compose allows more, Alto names apps after services)');
    }
    if (!isMap(value)) {
      file.problem(keyNode, path, 'must be a map of service settings');
      return entry;
    }
    let environmentFromFiles: Record<string, string> = {};
    let exposed: number | undefined;
    let shmKey: Node | undefined;
    for (const { key, keyNode: fieldKey, value: node } of file.entries(value)) {
      const at = `${path}.${key}`;
      const field = node ?? fieldKey;
      switch (key) {
        case 'image':
          service.image = this.text(field, at);
          break;
        case 'build':
          service.build = this.build(field, at);
          break;
        case 'command':
        case 'entrypoint':
          service[key] = this.argv(field, at);
          break;
        case 'environment':
          service.environment = this.environment(field, at);
          break;
        case 'env_file':
          environmentFromFiles = this.envFiles(field, at);
          break;
        case 'ports': {
          const ports = file.items(field);
          if (!isSeq(field)) file.problem(fieldKey, at, 'must be a list of ports');
          entry.hasPorts = ports.length > 0;
          const first = ports.map((port, index) => this.port(port, `${at}[${index}]`))[0];
          if (first !== undefined) service.port = first;
          break;
        }
        case 'expose': {
          if (!isSeq(field)) file.problem(fieldKey, at, 'must be a list of ports');
          exposed = file.items(field).map((port, index) => this.exposedPort(port, `${at}[${index}]`))[0];
          break;
        }
        case 'volumes':
          if (!isSeq(field)) file.problem(fieldKey, at, 'must be a list of volumes');
          file.items(field).forEach((volume, index) => this.volume(volume, `${at}[${index}]`, service.volumes));
          break;
        case 'depends_on':
          this.dependsOn(field, at, entry);
          break;
        case 'healthcheck':
          service.healthcheck = this.healthcheck(field, at);
          break;
        case 'stop_signal':
          service.stopSignal = this.text(field, at);
          break;
        case 'stop_grace_period': {
          const text = this.text(field, at);
          const seconds = text === undefined ? undefined : durationInSeconds(text);
          if (text !== undefined && seconds === undefined) file.problem(fieldKey, at, `must be a duration such as 10s or 1m30s, not "${text}"`);
          else service.stopGraceSeconds = seconds;
          break;
        }
        case 'restart': {
          const restart = this.text(field, at);
          if (restart !== undefined && !RESTART_POLICIES.test(restart)) file.problem(fieldKey, at, `must be no, always, on-failure or unless-stopped, not "${restart}"`);
          else if (restart !== undefined) service.restart = restart;
          break;
        }
        case 'deploy':
          this.deploy(field, at, service);
          break;
        case 'secrets':
          this.secrets(field, at, service);
          break;
        case 'shm_size': {
          // Docker gives /dev/shm 64 MiB unless told more; an Alto sandbox's /dev/shm is a tmpfs
          // bounded only by the app's memory, so any size within it is already there.
          const text = this.text(field, at);
          const mebibytes = text === undefined ? undefined : memoryInMiB(text);
          if (text !== undefined && !(mebibytes && mebibytes > 0)) file.problem(fieldKey, at, `"${text}" is not a size like 64m or 1g`);
          else if (mebibytes !== undefined) {
            service.shmMiB = mebibytes;
            shmKey = fieldKey;
          }
          break;
        }
        case 'x-alto':
          if (isMap(field)) service.extensions = file.json(field) as Record<string, unknown>;
          else file.problem(fieldKey, at, 'must be a map');
          break;
        case 'privileged':
          if (!(isScalar(field) && field.value === false)) file.problem(fieldKey, at, "privileged: true is refused: it would give the container the host's powers; every app runs in its own sandbox");
          break;
        case 'network_mode': {
          const mode = this.text(field, at);
          if (mode !== undefined && mode !== 'bridge') file.problem(fieldKey, at, `network_mode: ${mode} would share the ${mode === 'host' ? "host's" : "another container's"} network; every app runs in its own sandbox`);
          break;
        }
        case 'pid':
        case 'ipc': {
          const mode = this.text(field, at);
          if (mode === 'host' || mode?.startsWith('container:') || mode?.startsWith('service:')) {
            file.problem(fieldKey, at, `${key}: ${mode} would share ${mode === 'host' ? "the host's" : "another container's"} ${key === 'pid' ? 'processes' : 'shared memory'}; every app runs in its own sandbox`);
          }
          break;
        }
        default:
          if (REFUSED_SERVICE_KEYS[key]) file.problem(fieldKey, at, `${key} is refused: ${REFUSED_SERVICE_KEYS[key]}`);
          else if (IGNORED_SERVICE_KEYS[key]) file.warn(fieldKey, at, `ignored: ${IGNORED_SERVICE_KEYS[key]}`);
          else if (!key.startsWith('x-')) file.warn(fieldKey, at, 'unknown service key, ignored');
      }
    }
    service.environment = { ...environmentFromFiles, ...service.environment };
    if (service.shmMiB !== undefined) {
      const given = service.extensions?.memory;
      const memory = typeof given === 'number' ? given : (service.memoryMiB ?? APP_DEFAULTS.memory);
      if (service.shmMiB > memory) file.warn(shmKey, `${path}.shm_size`, `/dev/shm holds at most the app's memory, ${memory} MiB, not ${service.shmMiB} MiB: raise deploy.resources.limits.memory`);
    }
    if (service.port === undefined && exposed !== undefined) service.port = exposed;
    if (service.image === undefined && service.build === undefined) file.problem(keyNode, path, 'needs image or build');
    return entry;
  }

  /** A scalar's text with compose interpolation applied. */
  private text(node: Node, path: string): string | undefined {
    const raw = this.file.scalar(node, path);
    if (raw === undefined || !(isScalar(node) && typeof node.value === 'string')) return raw;
    return this.variables.interpolate(raw, (message) => this.file.problem(node, path, message));
  }

  private build(node: Node, path: string): StackService['build'] {
    const file = this.file;
    const build: NonNullable<StackService['build']> = { context: '.', args: {} };
    let context: string | undefined;
    if (isScalar(node)) context = this.text(node, path);
    else if (isMap(node)) {
      for (const { key, keyNode, value } of file.entries(node)) {
        const at = `${path}.${key}`;
        if (key === 'context') context = this.text(value ?? keyNode, at);
        else if (key === 'args') build.args = this.keyValues(value ?? keyNode, at, false);
        else if (key === 'dockerfile') {
          const dockerfile = this.text(value ?? keyNode, at);
          const inside = dockerfile === undefined ? undefined : insideFolder(dockerfile);
          if (dockerfile !== undefined && inside === undefined) file.problem(keyNode, at, `dockerfile ${dockerfile} must be a path inside the build context`);
          else if (inside !== undefined) build.dockerfile = inside;
        } else file.warn(keyNode, at, 'unknown build key, ignored (known: context, dockerfile, args)');
      }
    } else {
      file.problem(node, path, 'must be a context folder or a map with context, dockerfile and args');
    }
    if (context !== undefined) {
      const inside = insideFolder(context);
      if (inside === undefined) file.problem(node, path, `build context ${context} is refused: it must be a folder inside the template folder`);
      else build.context = inside;
    }
    return build;
  }

  private argv(node: Node, path: string): string[] | undefined {
    if (isSeq(node)) return this.file.items(node).map((item, index) => this.text(item, `${path}[${index}]`) ?? '');
    const line = this.text(node, path);
    if (line === undefined) return undefined;
    const words = splitCommand(line);
    if (!words) this.file.problem(node, path, `unclosed quote in "${line}"`);
    return words;
  }

  /** A map of names to values, or a list of NAME=VALUE; `NAME` alone (or `NAME:` with no value) reads the template's variables when `fromVariables`. */
  private keyValues(node: Node, path: string, fromVariables: boolean): Record<string, string> {
    const file = this.file;
    const result: Record<string, string> = {};
    const put = (name: string, value: string | undefined, at: Node, where: string) => {
      if (!name || name.includes('=') || /\s/.test(name)) {
        file.problem(at, where, `"${name}" is not a variable name`);
      } else if (value !== undefined) {
        result[name] = value;
      } else {
        const fromTemplate = fromVariables ? this.variables.lookup(name) : undefined;
        if (fromTemplate !== undefined) result[name] = fromTemplate;
        else file.problem(at, where, `${name} has no value: write ${name}=value, or give it with --set ${name}=... or a parameter in alto.yaml`);
      }
    };
    if (isMap(node)) {
      for (const { key, keyNode, value } of file.entries(node)) {
        const at = `${path}.${key}`;
        put(key, value === null || (isScalar(value) && value.value === null) ? undefined : this.text(value, at), keyNode, at);
      }
    } else if (isSeq(node)) {
      file.items(node).forEach((item, index) => {
        const at = `${path}[${index}]`;
        const line = file.scalar(item, at);
        if (line === undefined) return;
        const equals = line.indexOf('=');
        if (equals < 0) put(line, undefined, item, at);
        else put(line.slice(0, equals), this.variables.interpolate(line.slice(equals + 1), (message) => file.problem(item, at, message)), item, at);
      });
    } else {
      file.problem(node, path, 'must be a map of NAME: value or a list of NAME=value');
    }
    return result;
  }

  private environment(node: Node, path: string): Record<string, string> {
    return this.keyValues(node, path, true);
  }

  private envFiles(node: Node, path: string): Record<string, string> {
    const file = this.file;
    const merged: Record<string, string> = {};
    const entries: { node: Node; at: string }[] = isSeq(node)
      ? file.items(node).map((item, index) => ({ node: item, at: `${path}[${index}]` }))
      : [{ node, at: path }];
    for (const { node: item, at } of entries) {
      let name: string | undefined;
      let required = true;
      if (isMap(item)) {
        for (const { key, keyNode, value } of file.entries(item)) {
          if (key === 'path') name = this.text(value ?? keyNode, `${at}.path`);
          else if (key === 'required') required = !(isScalar(value) && value.value === false);
          else file.warn(keyNode, `${at}.${key}`, 'unknown env_file key, ignored (known: path, required)');
        }
        if (name === undefined) file.problem(item, at, 'needs a path');
      } else {
        name = this.text(item, at);
      }
      if (name === undefined) continue;
      const inside = insideFolder(name);
      const text = inside === undefined ? undefined : this.readFile?.(inside);
      if (inside === undefined) {
        file.problem(item, at, `env_file ${name} must be a file inside the template folder`);
      } else if (text === undefined) {
        if (required) file.problem(item, at, `env_file ${name} is missing from the template folder`);
      } else {
        Object.assign(merged, this.parseEnvFile(text, inside, item, at));
      }
    }
    return merged;
  }

  /** Lines of NAME=VALUE; `#` comments and blank lines skipped, surrounding quotes removed, values interpolated. */
  private parseEnvFile(text: string, name: string, node: Node, path: string): Record<string, string> {
    const result: Record<string, string> = {};
    text.split(/\r?\n/).forEach((raw, index) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$/.exec(line);
      const where = `${path} (${name} line ${index + 1})`;
      if (!match) {
        this.file.problem(node, where, `"${line}" is not NAME=VALUE`);
        return;
      }
      const [, key, value] = match;
      if (/^'.*'$/.test(value)) result[key] = value.slice(1, -1);
      else {
        const unquoted = /^".*"$/.test(value) ? value.slice(1, -1) : value;
        result[key] = this.variables.interpolate(unquoted, (message) => this.file.problem(node, where, message));
      }
    });
    return result;
  }

  /** The container port of a `ports` entry (short or long syntax). */
  private port(node: Node, path: string): number | undefined {
    if (isMap(node)) {
      let target: number | undefined;
      for (const { key, keyNode, value } of this.file.entries(node)) {
        const at = `${path}.${key}`;
        if (key === 'target') target = this.portNumber(value ?? keyNode, at);
        else if (key === 'protocol') this.refuseUdp(this.text(value ?? keyNode, at), keyNode, at);
        else if (!['published', 'host_ip', 'mode', 'name', 'app_protocol'].includes(key)) this.file.warn(keyNode, at, 'unknown port key, ignored');
      }
      if (target === undefined) this.file.problem(node, path, 'needs target (the container port)');
      return target;
    }
    const spec = this.text(node, path);
    if (spec === undefined) return undefined;
    const [address, protocol] = spec.split('/');
    if (!this.refuseUdp(protocol, node, path)) return undefined;
    return this.portText(address.slice(address.lastIndexOf(':') + 1), node, path);
  }

  private exposedPort(node: Node, path: string): number | undefined {
    const spec = this.text(node, path);
    if (spec === undefined) return undefined;
    const [port, protocol] = spec.split('/');
    return this.refuseUdp(protocol, node, path) ? this.portText(port, node, path) : undefined;
  }

  /** False, with a problem, when the protocol is anything but tcp. */
  private refuseUdp(protocol: string | undefined, node: Node, path: string): boolean {
    if (protocol === undefined || protocol.toLowerCase() === 'tcp') return true;
    this.file.problem(node, path, `${protocol} ports are refused: apps serve HTTP or TCP`);
    return false;
  }

  private portNumber(node: Node, path: string): number | undefined {
    const text = this.text(node, path);
    return text === undefined ? undefined : this.portText(text, node, path);
  }

  private portText(text: string, node: Node, path: string): number | undefined {
    const port = /^\d+$/.test(text) ? Number(text) : NaN;
    if (port >= 1 && port <= 65535) return port;
    this.file.problem(node, path, /^\d+-\d+$/.test(text) ? `port range ${text} is refused: a service serves one port` : `"${text}" is not a port number (1-65535)`);
    return undefined;
  }

  private volume(node: Node, path: string, volumes: StackVolume[]): void {
    const file = this.file;
    let name: string | undefined;
    let target: string | undefined;
    if (isMap(node)) {
      let type: string | undefined;
      for (const { key, keyNode, value } of file.entries(node)) {
        const at = `${path}.${key}`;
        if (key === 'type') type = this.text(value ?? keyNode, at);
        else if (key === 'source') name = this.text(value ?? keyNode, at);
        else if (key === 'target') target = this.text(value ?? keyNode, at);
        else if (!['read_only', 'volume', 'consistency'].includes(key)) file.warn(keyNode, at, 'unknown volume key, ignored');
      }
      if (type === 'bind') return file.problem(node, path, `bind mount ${name ?? '(no source)'} is refused: ${BIND_MOUNT_REFUSED}`);
      if (type === 'tmpfs') return file.problem(node, path, `tmpfs mount ${target ?? '(no target)'} is refused: ${REFUSED_SERVICE_KEYS.tmpfs}`);
      if (type !== 'volume') return file.problem(node, path, `volume type ${type ?? '(none)'} is refused: write type: volume with source and target`);
      if (name === undefined || target === undefined) return file.problem(node, path, 'a volume needs source (a named volume) and target (its path in the container)');
    } else {
      const spec = this.text(node, path);
      if (spec === undefined) return;
      const parts = spec.split(':');
      if (parts.length === 1) return file.problem(node, path, `anonymous volume ${spec} is refused: name it (volumes: name:${spec}) and declare it under the top-level volumes`);
      [name, target] = parts;
      if (isBindSource(name)) return file.problem(node, path, `bind mount ${name} is refused: ${BIND_MOUNT_REFUSED}`);
      if (parts.length > 3 || (parts[2] !== undefined && !/^(?:ro|rw|z|Z|nocopy)(?:,(?:ro|rw|z|Z|nocopy))*$/.test(parts[2]))) {
        return file.problem(node, path, `"${spec}" is not name:/path[:ro]`);
      }
    }
    if (isBindSource(name)) return file.problem(node, path, `bind mount ${name} is refused: ${BIND_MOUNT_REFUSED}`);
    if (!VOLUME_NAME.test(name)) return file.problem(node, path, `"${name}" is not a volume name`);
    if (!target.startsWith('/')) return file.problem(node, path, `the mount path ${target} must be absolute`);
    if (!this.volumeNames.has(name)) return file.problem(node, path, `volume ${name} is not declared under the top-level volumes (compose requires it)`);
    volumes.push({ name, path: posix.normalize(target) });
  }

  private dependsOn(node: Node, path: string, entry: ServiceEntry): void {
    const file = this.file;
    const add = (service: string | undefined, condition: string, at: Node) => {
      if (service === undefined) return;
      entry.service.dependsOn.push({ service, condition });
      entry.dependencyNodes.set(service, at);
    };
    if (isSeq(node)) {
      file.items(node).forEach((item, index) => add(this.text(item, `${path}[${index}]`), 'service_started', item));
    } else if (isMap(node)) {
      for (const { key, keyNode, value } of file.entries(node)) {
        let condition = 'service_started';
        for (const option of file.entries(value)) {
          const at = `${path}.${key}.${option.key}`;
          if (option.key === 'condition') {
            const given = this.text(option.value ?? option.keyNode, at);
            if (given !== undefined && !CONDITIONS.includes(given)) file.problem(option.keyNode, at, `must be one of ${CONDITIONS.join(', ')}, not "${given}"`);
            else if (given !== undefined) condition = given;
          } else if (option.key !== 'restart' && option.key !== 'required') {
            file.warn(option.keyNode, at, 'unknown depends_on key, ignored (known: condition, restart, required)');
          }
        }
        add(key, condition, keyNode);
      }
    } else {
      file.problem(node, path, 'must be a list of service names or a map of service name to condition');
    }
  }

  private healthcheck(node: Node, path: string): StackService['healthcheck'] {
    const file = this.file;
    if (!isMap(node)) {
      file.problem(node, path, 'must be a map with test, interval, timeout, retries and start_period');
      return undefined;
    }
    const check: NonNullable<StackService['healthcheck']> = { test: [] };
    let disabled = false;
    const seconds = (value: Node, at: string) => {
      const text = this.text(value, at);
      const result = text === undefined ? undefined : durationInSeconds(text);
      if (text !== undefined && result === undefined) file.problem(value, at, `"${text}" is not a duration like 10s or 1m30s`);
      return result;
    };
    for (const { key, keyNode, value } of file.entries(node)) {
      const at = `${path}.${key}`;
      const field = value ?? keyNode;
      if (key === 'test') {
        const test = isSeq(field) ? this.argv(field, at) ?? [] : ['CMD-SHELL', this.text(field, at) ?? ''];
        if (test[0] === 'NONE') disabled = true;
        else if (test[0] === 'CMD') check.test = test.slice(1);
        else if (test[0] === 'CMD-SHELL') check.test = ['/bin/sh', '-c', test.slice(1).join(' ')];
        else file.problem(keyNode, at, 'a test list starts with CMD, CMD-SHELL or NONE');
      } else if (key === 'interval') check.intervalSeconds = seconds(field, at);
      else if (key === 'timeout') check.timeoutSeconds = seconds(field, at);
      else if (key === 'start_period') check.startPeriodSeconds = seconds(field, at);
      else if (key === 'retries') {
        if (isScalar(field) && Number.isInteger(field.value) && (field.value as number) >= 0) check.retries = field.value as number;
        else file.problem(keyNode, at, 'must be a whole number');
      } else if (key === 'disable') disabled = isScalar(field) && field.value === true;
      else if (key !== 'start_interval') file.warn(keyNode, at, 'unknown healthcheck key, ignored');
    }
    for (const key of ['intervalSeconds', 'timeoutSeconds', 'startPeriodSeconds'] as const) if (check[key] === undefined) delete check[key];
    if (disabled) return undefined;
    if (check.test.length === 0 || check.test.every((word) => !word)) {
      file.problem(node, path, 'needs a test');
      return undefined;
    }
    return check;
  }

  private deploy(node: Node, path: string, service: StackService): void {
    const file = this.file;
    for (const { key, keyNode, value } of file.entries(node)) {
      const at = `${path}.${key}`;
      if (key === 'replicas') {
        const replicas = Number(this.text(value ?? keyNode, at));
        if (Number.isInteger(replicas) && replicas >= 0 && replicas <= 100) service.replicas = replicas;
        else file.problem(keyNode, at, 'must be a whole number from 0 to 100');
      } else if (key === 'resources') {
        for (const resource of file.entries(value)) {
          if (resource.key !== 'limits') {
            file.warn(resource.keyNode, `${at}.${resource.key}`, 'ignored: only deploy.resources.limits is honoured');
            continue;
          }
          for (const limit of file.entries(resource.value)) {
            const limitPath = `${at}.limits.${limit.key}`;
            const text = limit.key === 'memory' || limit.key === 'cpus' ? this.text(limit.value ?? limit.keyNode, limitPath) : undefined;
            if (limit.key === 'memory' && text !== undefined) {
              const mebibytes = memoryInMiB(text);
              if (mebibytes && mebibytes > 0) service.memoryMiB = mebibytes;
              else file.problem(limit.keyNode, limitPath, `"${text}" is not a size like 512m or 1g`);
            } else if (limit.key === 'cpus' && text !== undefined) {
              const cpus = Number(text);
              if (cpus > 0) service.cpus = cpus;
              else file.problem(limit.keyNode, limitPath, `"${text}" is not a number of CPUs like 0.5 or 2`);
            } else if (limit.key !== 'memory' && limit.key !== 'cpus') {
              file.warn(limit.keyNode, limitPath, 'ignored: only memory and cpus limits are honoured');
            }
          }
        }
      } else {
        file.warn(keyNode, at, 'ignored: only deploy.replicas and deploy.resources.limits are honoured');
      }
    }
  }

  /**
   * The secrets a service sees as files: `- name`, or `{source, target, mode, uid, gid}`; the
   * file is /run/secrets/<target> (a name, or that path written whole), never elsewhere: Alto
   * writes it to memory there, not onto the image's filesystem.
   */
  private secrets(node: Node, path: string, service: StackService): void {
    const file = this.file;
    if (!isSeq(node)) return file.problem(node, path, 'must be a list of secret names or of maps with source, target and mode');
    file.items(node).forEach((item, index) => {
      const at = `${path}[${index}]`;
      const use: Partial<StackSecretFile> = {};
      if (isMap(item)) {
        for (const { key, keyNode, value } of file.entries(item)) {
          const where = `${at}.${key}`;
          const field = value ?? keyNode;
          if (key === 'source') use.source = this.text(field, where);
          else if (key === 'target') {
            const target = this.text(field, where);
            if (target === undefined) continue;
            const name = target.startsWith('/') ? /^\/run\/secrets\/([^/]+)$/.exec(posix.normalize(target))?.[1] : target;
            if (name === undefined) file.problem(keyNode, where, `${target} is refused: a secret's file is /run/secrets/<name>, in memory, never elsewhere in the image's filesystem`);
            else if (!SECRET_TARGET.test(name)) file.problem(keyNode, where, `"${name}" is not a file name (letters, digits and ._-)`);
            else use.target = name;
          } else if (key === 'mode') use.mode = this.fileMode(field, where);
          else if (key === 'uid' || key === 'gid') {
            const id = this.text(field, where);
            if (id !== undefined && /^\d{1,5}$/.test(id) && Number(id) <= 65535) use[key] = Number(id);
            else if (id !== undefined) file.problem(keyNode, where, `"${id}" is not a numeric ${key} (0-65535)`);
          } else file.warn(keyNode, where, 'unknown secret key, ignored (known: source, target, mode, uid, gid)');
        }
        if (use.source === undefined) return file.problem(item, at, 'needs source (the name of a top-level secret)');
      } else {
        use.source = this.text(item, at);
        if (use.source === undefined) return;
      }
      const name = use.source;
      if (!this.secretNames.has(name)) return file.problem(item, at, `secret ${name} is not declared under the top-level secrets`);
      const target = use.target ?? name;
      if (!SECRET_TARGET.test(target)) return file.problem(item, at, `"${target}" is not a file name for /run/secrets (letters, digits and ._-): give target`);
      if (service.secrets.some((other) => other.target === target)) return file.problem(item, at, `/run/secrets/${target} is given twice`);
      service.secrets.push({ source: name, target, mode: use.mode ?? 0o444, ...(use.uid !== undefined ? { uid: use.uid } : {}), ...(use.gid !== undefined ? { gid: use.gid } : {}) });
    });
  }

  /** A file mode as compose writes it: octal with a leading 0 (0440, 0o440, "0440"), else a decimal number, as Docker reads it. */
  private fileMode(node: Node, path: string): number | undefined {
    const range = node.range;
    const written = isScalar(node) && typeof node.value === 'number' && range ? this.file.text.slice(range[0], range[1]).trim() : this.text(node, path);
    if (written === undefined) return undefined;
    const octal = /^0o?([0-7]*)$/i.exec(written);
    const mode = octal ? parseInt(octal[1] || '0', 8) : /^[1-9]\d*$/.test(written) ? Number(written) : NaN;
    if (Number.isNaN(mode) || mode > 0o775) this.file.problem(node, path, `"${written}" is not a file mode like 0440 (at most 0775)`);
    else if (mode & 0o002) this.file.problem(node, path, `${written} would make the secret's file world-writable`);
    else return mode;
    return undefined;
  }
}

function pickPublic(settings: AltoSettings, services: ServiceEntry[], alto: TemplateFile | undefined): StackPlan['public'] {
  const domain = settings.domain ? { domain: settings.domain } : {};
  if (settings.publicService) {
    const { name, node } = settings.publicService;
    const entry = services.find((candidate) => candidate.service.name === name);
    if (!entry) alto?.problem(node, 'public', `compose.yaml has no service ${name}`);
    else if (entry.service.port === undefined) alto?.problem(node, 'public', `service ${name} has no port to serve (give it ports or expose)`);
    return { service: name, ...domain };
  }
  const first = services.find((entry) => entry.hasPorts && entry.service.port !== undefined);
  return first ? { service: first.service.name, ...domain } : undefined;
}

/** Orders services so each comes after those it depends on, keeping file order where free; reports unknown names and cycles. */
function dependencyOrder(file: TemplateFile, entries: ServiceEntry[]): StackService[] {
  const names = new Set(entries.map((entry) => entry.service.name));
  for (const entry of entries) {
    for (const [dependency, node] of entry.dependencyNodes) {
      const path = `services.${entry.service.name}.depends_on`;
      if (!names.has(dependency)) file.problem(node, path, `no service named ${dependency}`);
      else if (dependency === entry.service.name) file.problem(node, path, `${dependency} depends on itself`);
    }
  }
  const ordered: StackService[] = [];
  const placed = new Set<string>();
  const waiting = [...entries];
  while (waiting.length) {
    const ready = waiting.findIndex((entry) =>
      entry.service.dependsOn.every(({ service }) => placed.has(service) || !names.has(service) || service === entry.service.name),
    );
    if (ready < 0) {
      const cycle = findCycle(waiting);
      const first = waiting.find((entry) => entry.service.name === cycle[0]) ?? waiting[0];
      file.problem(first.dependencyNodes.get(cycle[1]) ?? first.keyNode, `services.${cycle[0]}.depends_on`, `services depend on each other in a cycle: ${cycle.join(' -> ')}`);
      ordered.push(...waiting.map((entry) => entry.service));
      break;
    }
    const [entry] = waiting.splice(ready, 1);
    placed.add(entry.service.name);
    ordered.push(entry.service);
  }
  return ordered;
}

/** A cycle among services none of which could be placed: follow unplaced dependencies until a name repeats. */
function findCycle(waiting: ServiceEntry[]): string[] {
  const byName = new Map(waiting.map((entry) => [entry.service.name, entry]));
  const path: string[] = [];
  let current = waiting[0];
  while (!path.includes(current.service.name)) {
    path.push(current.service.name);
    const next = current.service.dependsOn.map(({ service }) => byName.get(service)).find((entry) => entry && entry !== current);
    if (!next) break;
    current = next;
  }
  return [...path.slice(path.indexOf(current.service.name)), current.service.name];
}
