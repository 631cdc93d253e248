/**
 * @module edge/openapi
 * Builds the OpenAPI 3.1 document from the service definitions: one POST operation per endpoint
 * with its request and response schemas (JSON Schema 2020-12, from zod) and a working example.
 * The SDK generator and the CLI read this document; nothing else describes the endpoints.
 */
import { z } from 'zod';
import type { EndpointDefinition, ServiceDefinition } from '../platform/service.js';

type JsonSchema = Record<string, unknown>;

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: { url: string }[];
  tags: { name: string; description: string }[];
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, JsonSchema>; securitySchemes: Record<string, unknown> };
  security: Record<string, string[]>[];
}

const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  description: "Every error has this shape (micro's error format, as M3O clients read it).",
  properties: {
    id: { type: 'string', description: 'stable machine code, e.g. not_found', examples: ['not_found'] },
    code: { type: 'integer', description: 'HTTP status code', examples: [404] },
    detail: { type: 'string', description: 'what went wrong and how to fix it' },
    status: { type: 'string', description: 'HTTP status text', examples: ['Not Found'] },
    request_id: { type: 'string', description: 'the id of the request, also in the server log' },
  },
  required: ['id', 'code', 'detail', 'status'],
};

const ERROR_RESPONSES: Record<string, string> = {
  '400': 'The request body is not valid; `detail` names the field and the rule.',
  '401': 'The API key is missing, not valid, or revoked.',
  '403': 'The key may not call this service, or is blocked.',
  '404': 'No such service or endpoint, or a named resource does not exist.',
  '413': 'The request body is larger than the server accepts.',
  '429': 'Too many requests.',
  '500': 'A fault in the server; the request id is in its log.',
};

export function pascalCase(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

/** The JSON Schema of an endpoint's request (`input`: defaults make fields optional). */
export function requestSchemaOf(endpoint: EndpointDefinition): JsonSchema {
  return z.toJSONSchema(endpoint.request, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
}

export function responseSchemaOf(endpoint: EndpointDefinition): JsonSchema {
  return z.toJSONSchema(endpoint.response, { io: 'output', unrepresentable: 'any' }) as JsonSchema;
}

/**
 * Moves a schema's `$defs` into the document's components and points its references there.
 * A definition whose input and output shapes differ keeps both, the input one as `<Name>Input`.
 */
function hoist(schema: JsonSchema, components: Record<string, JsonSchema>): JsonSchema {
  const { $schema: _dialect, $defs, ...rest } = schema as JsonSchema & { $defs?: Record<string, JsonSchema> };
  const renames = new Map<string, string>();
  for (const [name, definition] of Object.entries($defs ?? {})) {
    const existing = components[name];
    const target = existing && JSON.stringify(existing) !== JSON.stringify(definition) ? `${name}Input` : name;
    renames.set(`#/$defs/${name}`, target);
  }
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (value === null || typeof value !== 'object') return value;
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) =>
        key === '$ref' && typeof inner === 'string' && renames.has(inner)
          ? [key, `#/components/schemas/${renames.get(inner)}`]
          : [key, rewrite(inner)],
      ),
    );
  };
  for (const [name, definition] of Object.entries($defs ?? {})) {
    components[renames.get(`#/$defs/${name}`)!] = rewrite(definition) as JsonSchema;
  }
  return rewrite(rest) as JsonSchema;
}

export function buildOpenApiDocument(services: ServiceDefinition[], version: string, serverUrl = '/'): OpenApiDocument {
  const schemas: Record<string, JsonSchema> = { ApiError: ERROR_SCHEMA };
  const paths: OpenApiDocument['paths'] = {};
  const sorted = [...services].sort((a, b) => a.name.localeCompare(b.name));
  for (const service of sorted) {
    for (const [name, endpoint] of Object.entries(service.endpoints)) {
      const base = `${pascalCase(service.name)}${name}`;
      schemas[`${base}Request`] = hoist(requestSchemaOf(endpoint), schemas);
      schemas[`${base}Response`] = hoist(responseSchemaOf(endpoint), schemas);
      const errorResponses = Object.fromEntries(
        Object.entries(ERROR_RESPONSES).map(([status, description]) => [
          status,
          { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiError' } } } },
        ]),
      );
      const streaming = endpoint.stream === true;
      paths[`/v1/${service.name}/${name}`] = {
        post: {
          operationId: `${service.name}.${name}`,
          tags: [service.name],
          summary: endpoint.description,
          description: streaming
            ? `${endpoint.description}\n\nStreaming: open a websocket on this path, send the request as the first message, then read one JSON message per item until the server closes the socket.`
            : endpoint.description,
          ...(endpoint.access === 'public' ? { security: [] } : {}),
          'x-alto-access': endpoint.access ?? 'key',
          'x-alto-stream': streaming,
          'x-alto-price-micros': endpoint.priceMicros ?? service.priceMicros,
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: { $ref: `#/components/schemas/${base}Request` },
                example: endpoint.example,
              },
            },
          },
          responses: {
            '200': {
              description: streaming ? 'One message of the stream (over websocket).' : 'Success.',
              content: { 'application/json': { schema: { $ref: `#/components/schemas/${base}Response` } } },
            },
            ...errorResponses,
          },
        },
      };
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Alto',
      version,
      description:
        'Building blocks behind one API key. Every endpoint is POST /v1/{service}/{Endpoint} with a JSON body; query-string parameters merge into the body.',
    },
    servers: [{ url: serverUrl }],
    tags: sorted.map((service) => ({ name: service.name, description: service.description })),
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' },
        basic: { type: 'http', scheme: 'basic', description: 'Basic auth with the API key as the password' },
      },
    },
    security: [{ bearer: [] }, { basic: [] }],
  };
}
