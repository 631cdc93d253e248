/**
 * @module cli/call
 * `alto call <service> <Endpoint> ['{json}' | --field value ...]`: calls any endpoint the server
 * offers. Field values get the JSON type the endpoint's schema gives them (read from the
 * server's OpenAPI document); dotted names build nested objects (`--record.name Ada`).
 */
import { AltoError, type Transport } from '@alto/sdk';

interface FieldSchema {
  type?: string | string[];
}

interface OperationInfo {
  stream: boolean;
  fields: Record<string, FieldSchema>;
}

interface OpenApiShape {
  paths: Record<string, { post: { 'x-alto-stream'?: boolean; requestBody: { content: { 'application/json': { schema: { $ref: string } } } } } }>;
  components: { schemas: Record<string, { properties?: Record<string, FieldSchema> }> };
}

export async function describeOperation(transport: Transport, service: string, endpoint: string): Promise<OperationInfo> {
  let response: Response;
  try {
    response = await fetch(`${transport.url}/v1/openapi.json`);
  } catch (error) {
    throw new AltoError('network', 0, `cannot reach Alto at ${transport.url}: ${(error as Error).message}`);
  }
  const document = (await response.json()) as OpenApiShape;
  const operation = document.paths[`/v1/${service}/${endpoint}`]?.post;
  if (!operation) {
    const services = [...new Set(Object.keys(document.paths).map((path) => path.split('/')[2]))];
    if (!services.includes(service)) {
      throw new AltoError('not_found', 404, `service "${service}" does not exist; services: ${services.join(', ')}`);
    }
    const endpoints = Object.keys(document.paths)
      .filter((path) => path.startsWith(`/v1/${service}/`))
      .map((path) => path.split('/')[3]);
    throw new AltoError('not_found', 404, `endpoint "${endpoint}" does not exist on "${service}"; it has ${endpoints.join(', ')}`);
  }
  const ref = operation.requestBody.content['application/json'].schema.$ref;
  const schema = document.components.schemas[ref.slice(ref.lastIndexOf('/') + 1)];
  return { stream: operation['x-alto-stream'] === true, fields: schema?.properties ?? {} };
}

/** Builds the request body from a JSON argument and `--field value` pairs. */
export function buildRequest(args: string[], fields: Record<string, FieldSchema>): Record<string, unknown> {
  let body: Record<string, unknown> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(arg);
      } catch (error) {
        throw new Error(`"${arg}" is not valid JSON (${(error as Error).message}); pass fields as --name value`);
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the JSON request must be an object');
      body = { ...body, ...(parsed as Record<string, unknown>) };
      continue;
    }
    let name = arg.slice(2);
    let raw: string | undefined;
    const equals = name.indexOf('=');
    if (equals >= 0) {
      raw = name.slice(equals + 1);
      name = name.slice(0, equals);
    } else if (i + 1 < args.length && !args[i + 1].startsWith('--')) {
      raw = args[++i];
    }
    const path = name.split('.');
    const type = path.length === 1 ? fields[name]?.type : undefined;
    setPath(body, path, coerce(name, raw, typeof type === 'string' ? type : undefined));
  }
  return body;
}

function coerce(name: string, raw: string | undefined, type: string | undefined): unknown {
  if (raw === undefined) {
    if (type === undefined || type === 'boolean') return true;
    throw new Error(`--${name} needs a value`);
  }
  switch (type) {
    case 'number':
    case 'integer': {
      const value = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(value)) throw new Error(`--${name} must be a number, not "${raw}"`);
      return value;
    }
    case 'boolean':
      if (raw !== 'true' && raw !== 'false') throw new Error(`--${name} must be true or false, not "${raw}"`);
      return raw === 'true';
    case 'array':
      return raw.startsWith('[') ? JSON.parse(raw) : raw.split(',').filter(Boolean);
    case 'object':
      return JSON.parse(raw);
    case 'string':
      return raw;
    default:
      // Unknown to the schema (nested paths, free-form records): JSON if it parses, else text.
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}
