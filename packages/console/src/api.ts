/**
 * The console's API client: `POST /v1/{service}/{Endpoint}` with the signed-in key, errors as
 * {@link ApiError} carrying the server's `detail`, and websockets for streams (the key goes in
 * `?key=`, as browsers cannot set headers on a websocket).
 */

/** An error the API answered with (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly requestId?: string,
  ) {
    super(detail);
  }
}

/** What a raw call returns: the status, the parsed body (or text), and how long it took. */
export interface RawResult {
  status: number;
  ok: boolean;
  body: unknown;
  text: string;
  ms: number;
}

/** Calls an endpoint and returns whatever came back, error or not (the explorer shows both). */
export async function callRaw(key: string | undefined, service: string, endpoint: string, body: unknown, environment?: string): Promise<RawResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  // Another environment of the key's project than its own (an owner or admin key may act there).
  if (environment) headers['x-alto-environment'] = environment;
  const started = performance.now();
  let response: Response;
  try {
    response = await fetch(`/v1/${service}/${endpoint}`, { method: 'POST', headers, body: JSON.stringify(body ?? {}) });
  } catch (error) {
    throw new ApiError(0, 'network', `cannot reach Alto: ${(error as Error).message}`);
  }
  const text = await response.text();
  const ms = performance.now() - started;
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, ok: response.ok, body: parsed, text, ms };
}

/** The ApiError an answer carries, from micro's error shape `{ id, code, detail, status }`. */
export function errorOf(result: RawResult): ApiError {
  const body = result.body as { id?: string; detail?: string; request_id?: string } | string;
  if (body && typeof body === 'object' && typeof body.detail === 'string') {
    return new ApiError(result.status, body.id ?? 'error', body.detail, body.request_id);
  }
  return new ApiError(result.status, 'error', typeof body === 'string' && body ? body.slice(0, 300) : `HTTP ${result.status}`);
}

/** Calls an endpoint; resolves with the response body, rejects with an ApiError. */
export async function call<T = any>(key: string | undefined, service: string, endpoint: string, body: unknown = {}, environment?: string): Promise<T> {
  const result = await callRaw(key, service, endpoint, body, environment);
  if (!result.ok) throw errorOf(result);
  return result.body as T;
}

/** `GET /v1/status`: who the key is and what the instance runs. */
export interface Status {
  version: string;
  ready: boolean;
  uptime_seconds: number;
  store: string;
  services: string[];
  key: { project: string; environment: string; role: 'admin' | 'owner' | 'project'; scopes: string[] };
  /** For the admin key, when Alto serves HTTPS: its port, and with ACME each host's certificate. */
  https?: { port: number; acme_directory?: string; certificates?: CertificateStatus[] };
  /** For the admin key, when Alto backs itself up on a schedule (`alto up --backup-to`). */
  backups?: BackupStatus;
}

/** Scheduled backups: where, how often, the last success and failure, the next time. */
export interface BackupStatus {
  to: string;
  every_seconds: number;
  keep: number;
  running: boolean;
  next_at?: string;
  successes: number;
  failures: number;
  last_success?: { id: string; finished_at: string; seconds: number; files: number; copied_blobs: number; copied_bytes: number; skipped: string[] };
  last_failure?: { at: string; reason: string };
}

/** A host's certificate as ACME keeps it: issuing, active (until `not_after`), or failed with why. */
export interface CertificateStatus {
  host: string;
  status: 'issuing' | 'active' | 'failed';
  not_after?: string;
  renew_at?: string;
  error?: string;
  failures: number;
  next_attempt?: string;
}

export async function readStatus(key: string): Promise<Status> {
  let response: Response;
  try {
    response = await fetch('/v1/status', { headers: { authorization: `Bearer ${key}` } });
  } catch (error) {
    throw new ApiError(0, 'network', `cannot reach Alto: ${(error as Error).message}`);
  }
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // keep the text
  }
  const result: RawResult = { status: response.status, ok: response.ok, body, text, ms: 0 };
  if (!response.ok) throw errorOf(result);
  return body as Status;
}

/** The websocket URL of a stream endpoint on this origin, with the key (and another environment to act in) in the query. */
export function streamUrl(service: string, endpoint: string, key: string, environment?: string): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const inEnvironment = environment ? `&environment=${encodeURIComponent(environment)}` : '';
  return `${scheme}//${location.host}/v1/${service}/${endpoint}?key=${encodeURIComponent(key)}${inEnvironment}`;
}

export interface StreamHandlers {
  onMessage(message: unknown): void;
  onError?(error: ApiError): void;
  onClose?(code: number, reason: string): void;
  onOpen?(): void;
}

/**
 * Opens a stream: sends the request as the first message, then hands each message on. An
 * error message (micro's shape) before a close with code 4000 + status becomes onError.
 * Returns a function that closes the stream.
 */
export function openStream(key: string, service: string, endpoint: string, request: unknown, handlers: StreamHandlers, environment?: string): () => void {
  const socket = new WebSocket(streamUrl(service, endpoint, key, environment));
  let lastError: ApiError | undefined;
  socket.onopen = () => {
    socket.send(JSON.stringify(request ?? {}));
    handlers.onOpen?.();
  };
  socket.onmessage = (event) => {
    let message: unknown = event.data;
    try {
      message = JSON.parse(String(event.data));
    } catch {
      // pass the text on
    }
    const maybeError = message as { detail?: unknown; code?: unknown; id?: unknown };
    if (maybeError && typeof maybeError === 'object' && typeof maybeError.detail === 'string' && typeof maybeError.code === 'number' && maybeError.code >= 400) {
      lastError = new ApiError(maybeError.code, String(maybeError.id ?? 'error'), maybeError.detail);
      return;
    }
    handlers.onMessage(message);
  };
  socket.onerror = () => {
    if (!lastError) lastError = new ApiError(0, 'network', 'the stream could not be opened (refused, or the connection dropped)');
  };
  socket.onclose = (event) => {
    if (event.code >= 4000 && !lastError) lastError = new ApiError(event.code - 4000, 'error', event.reason || `stream closed with ${event.code}`);
    if (lastError && (event.code !== 1000 || lastError.status >= 400)) handlers.onError?.(lastError);
    handlers.onClose?.(event.code, event.reason);
  };
  return () => {
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.close(1000, 'closed by the console');
  };
}

/** A fetch of the OpenAPI document, cached for the page's life. */
let openApiPromise: Promise<OpenApiDocument> | undefined;

export function loadOpenApi(): Promise<OpenApiDocument> {
  openApiPromise ??= fetch('/v1/openapi.json').then(async (response) => {
    if (!response.ok) throw new ApiError(response.status, 'error', `GET /v1/openapi.json answered ${response.status}`);
    return (await response.json()) as OpenApiDocument;
  });
  openApiPromise.catch(() => (openApiPromise = undefined));
  return openApiPromise;
}

export interface JsonSchema {
  type?: string | string[];
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  default?: unknown;
  anyOf?: JsonSchema[];
  $ref?: string;
  minimum?: number;
  maximum?: number;
}

export interface OpenApiOperation {
  operationId: string;
  tags: string[];
  summary?: string;
  description?: string;
  'x-alto-access'?: 'public' | 'key' | 'manage' | 'admin';
  'x-alto-stream'?: boolean;
  'x-alto-price-micros'?: number;
  requestBody?: { content: { 'application/json': { schema: JsonSchema; example?: unknown } } };
}

export interface OpenApiDocument {
  info: { title: string; version: string };
  tags?: { name: string; description?: string }[];
  paths: Record<string, { post: OpenApiOperation }>;
  components: { schemas: Record<string, JsonSchema> };
}

/** One endpoint of the document, as the explorer lists it. */
export interface EndpointInfo {
  service: string;
  endpoint: string;
  operation: OpenApiOperation;
  request: JsonSchema;
  example: unknown;
}

/** Follows `$ref`s (a few levels; a reference to itself ends the walk) to the schema itself. */
export function resolveSchema(document: OpenApiDocument, schema: JsonSchema | undefined): JsonSchema {
  let current = schema ?? {};
  for (let depth = 0; depth < 8 && current.$ref; depth++) {
    const next = document.components.schemas[current.$ref.slice(current.$ref.lastIndexOf('/') + 1)];
    if (!next || next === current) return {};
    current = next;
  }
  return current;
}

export function listEndpoints(document: OpenApiDocument): EndpointInfo[] {
  return Object.entries(document.paths).flatMap(([path, item]) => {
    const [, , service, endpoint] = path.split('/');
    if (!service || !endpoint || !item.post) return [];
    const content = item.post.requestBody?.content['application/json'];
    return [{ service, endpoint, operation: item.post, request: resolveSchema(document, content?.schema), example: content?.example ?? {} }];
  });
}
