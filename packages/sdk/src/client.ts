/**
 * @module client
 * The transport under every generated service: JSON over `POST /v1/{service}/{Endpoint}`, and
 * websocket streams read as async iterators. Errors become {@link AltoError} with the server's
 * stable code, HTTP status and detail.
 */

export interface AltoOptions {
  /** Where Alto listens, e.g. `http://localhost:4000`. */
  url: string;
  /** An API key (`alto_...`). */
  key?: string;
  /**
   * The environment of its project an admin or owner key acts in (sent as `X-Alto-Environment`);
   * absent: the key's own. A project key may name only its own.
   */
  environment?: string;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

/** An error answered by Alto (or a transport failure, with code `network`). */
export class AltoError extends Error {
  /** Stable machine code, e.g. `not_found`, `forbidden`, `bad_request`. */
  readonly code: string;
  /** HTTP status (0 for a network failure). */
  readonly status: number;
  readonly detail: string;
  readonly requestId?: string;

  constructor(code: string, status: number, detail: string, requestId?: string) {
    super(`${detail} (${code}, ${status})`);
    this.name = 'AltoError';
    this.code = code;
    this.status = status;
    this.detail = detail;
    this.requestId = requestId;
  }
}

interface ErrorBody {
  id?: string;
  code?: number;
  detail?: string;
  request_id?: string;
}

function errorFrom(status: number, body: unknown): AltoError {
  const error = (body ?? {}) as ErrorBody;
  return new AltoError(error.id ?? 'error', error.code ?? status, error.detail ?? `HTTP ${status}`, error.request_id);
}

/** Calls any endpoint by name; the generated service classes are typed wrappers around it. */
export class Transport {
  readonly url: string;
  readonly key?: string;
  readonly environment?: string;
  private readonly fetchImpl: typeof fetch;

  constructor(options: AltoOptions) {
    if (!options.url) throw new TypeError('Alto: `url` is required, e.g. http://localhost:4000');
    this.url = options.url.replace(/\/+$/, '');
    this.key = options.key;
    this.environment = options.environment;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private headers(): Record<string, string> {
    return {
      'content-type': 'application/json',
      ...(this.key ? { authorization: `Bearer ${this.key}` } : {}),
      ...(this.environment ? { 'x-alto-environment': this.environment } : {}),
    };
  }

  /**
   * Calls one endpoint and returns its response.
   * @example
   * const { id } = await transport.call('id', 'Generate', { type: 'ulid' });
   */
  async call<Response = unknown>(service: string, endpoint: string, request: object = {}): Promise<Response> {
    let response: globalThis.Response;
    try {
      response = await this.fetchImpl(`${this.url}/v1/${service}/${endpoint}`, {
        method: 'POST',
        headers: this.headers(),
        body: JSON.stringify(request),
      });
    } catch (error) {
      throw new AltoError('network', 0, `cannot reach Alto at ${this.url}: ${(error as Error).message}`);
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      throw new AltoError('bad_response', response.status, `Alto answered something that is not JSON: ${text.slice(0, 200)}`);
    }
    if (!response.ok) throw errorFrom(response.status, body);
    return body as Response;
  }

  /**
   * Opens a websocket stream: sends `request` first, then yields one message per item until
   * the server ends the stream. Breaking out of the loop closes the socket.
   * @example
   * for await (const { id } of transport.stream('id', 'Stream', { count: 3 })) console.log(id);
   */
  async *stream<Response = unknown>(service: string, endpoint: string, request: object = {}): AsyncGenerator<Response> {
    const socket = await openSocket(`${this.url.replace(/^http/, 'ws')}/v1/${service}/${endpoint}`, this.headers());
    const queue: Response[] = [];
    let finished = false;
    let failure: AltoError | undefined;
    let wake: (() => void) | undefined;
    const notify = () => {
      wake?.();
      wake = undefined;
    };
    socket.onmessage = (data) => {
      const message = JSON.parse(data) as Response & ErrorBody;
      // An error is sent as one message in the micro error shape, then the socket closes 4000+status.
      if (message && typeof message === 'object' && typeof message.detail === 'string' && typeof message.code === 'number' && typeof message.id === 'string' && message.code >= 400) {
        failure = errorFrom(message.code, message);
      } else {
        queue.push(message);
      }
      notify();
    };
    socket.onclose = (code, reason) => {
      finished = true;
      if (!failure && code >= 4000 && code < 5000) failure = new AltoError('error', code - 4000, reason || 'stream failed');
      else if (!failure && code !== 1000 && code !== 1005) failure = new AltoError('network', 0, `stream closed (${code}) ${reason}`);
      notify();
    };
    socket.send(JSON.stringify(request));
    try {
      while (true) {
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (failure) throw failure;
        if (finished) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      socket.close();
    }
  }
}

interface MinimalSocket {
  send(data: string): void;
  close(): void;
  onmessage: (data: string) => void;
  onclose: (code: number, reason: string) => void;
}

/** A websocket from the `ws` package, which lets Node send the Authorization header. */
async function openSocket(url: string, headers: Record<string, string>): Promise<MinimalSocket> {
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(url, { headers });
  const socket: MinimalSocket = {
    send: (data) => ws.send(data),
    close: () => ws.close(),
    onmessage: () => {},
    onclose: () => {},
  };
  ws.on('message', (data) => socket.onmessage(data.toString()));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = undefined;
        }
        reject(errorFrom(response.statusCode ?? 0, body));
      });
    });
    ws.once('error', (error) => reject(new AltoError('network', 0, `cannot open a stream to ${url}: ${error.message}`)));
  });
  ws.on('close', (code, reason) => socket.onclose(code, reason.toString()));
  return socket;
}
