/**
 * @module compute/images/registry-client
 * A client of the OCI distribution API (`/v2/`) for one registry: manifests by tag or digest,
 * blobs as streams from any offset (for resuming), anonymous, bearer-token and basic
 * authentication driven by the registry's `WWW-Authenticate` challenge, and HTTPS always except
 * for loopback registries or ones the operator marked insecure, which may answer plain HTTP.
 */
import type { LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';
import { AltoError, errors } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { parseChallenges, type Challenge, type RegistryCredentials } from './auth.js';
import { discard, NetworkError, readBody, send as sendRequest, type HttpResponse, type RequestOptions } from './http.js';
import { digestOf, MANIFEST_ACCEPT, MAX_DOCUMENT_BYTES } from './manifest.js';
import { apiHostOf, isLoopbackRegistry } from './reference.js';

export interface RegistryClientOptions {
  /** Registry name as in references: `docker.io`, `ghcr.io`, `localhost:5000`. */
  registry: string;
  /** Saved credentials for this registry, looked up on every authentication. */
  credentials: () => RegistryCredentials | undefined;
  /** Plain HTTP is allowed (loopback registries always are). */
  insecure?: boolean;
  log: Logger;
  idleTimeoutMs?: number;
  /** The outbound guard of a tenant's pull, for every request this client makes (token servers and redirects included). */
  guard?: (url: URL) => Promise<LookupFunction>;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string | undefined;
  digest: string;
}

export interface OpenedBlob {
  stream: Readable;
  /** The byte the stream starts at: the offset asked for, or 0 when the server ignored `Range`. */
  offset: number;
  /** Bytes this response carries, when the server said. */
  length?: number;
}

interface RegistryErrorBody {
  errors?: { code?: string; message?: string; detail?: unknown }[];
}

/** How long a token is trusted when the token server does not say (the spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
const TRANSIENT_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);

export class RegistryClient {
  readonly registry: string;
  private readonly host: string;
  private baseUrl?: Promise<URL>;
  /** Authorization header values by scope (`repository:org/app:pull`); tokens with their expiry. */
  private readonly authorizations = new Map<string, { header: string; expiresAt: number }>();

  constructor(private readonly options: RegistryClientOptions) {
    this.registry = options.registry;
    this.host = apiHostOf(options.registry);
  }

  /** Every request of this client, through its guard when it has one. */
  private send(url: URL, options: RequestOptions = {}): Promise<HttpResponse> {
    return sendRequest(url, { ...options, guard: this.options.guard });
  }

  private get mayUseHttp(): boolean {
    return schemesFor(this.registry, this.options.insecure).includes('http');
  }

  /**
   * Where the API answers: the first scheme of `schemesFor` that connects. A registry allowed
   * plain HTTP that does not speak TLS is then tried over HTTP, as Docker does.
   */
  private base(): Promise<URL> {
    this.baseUrl ??= (async () => {
      const [first, ...fallbacks] = schemesFor(this.registry, this.options.insecure).map((scheme) => new URL(`${scheme}://${this.host}/v2/`));
      if (fallbacks.length === 0) return first;
      try {
        discard(await this.send(first, { idleTimeoutMs: 5_000 }));
        return first;
      } catch (firstError) {
        for (const fallback of fallbacks) {
          try {
            discard(await this.send(fallback, { idleTimeoutMs: 5_000 }));
            return fallback;
          } catch {
            // Report the HTTPS failure: it says more than the fallback's.
          }
        }
        throw firstError;
      }
    })().catch((error) => {
      this.baseUrl = undefined;
      throw error;
    });
    return this.baseUrl;
  }

  private async url(path: string): Promise<URL> {
    return new URL(path, await this.base());
  }

  /**
   * Sends a request with the authorization for `scope`; on a 401 answers the challenge (a token
   * from the realm, or basic credentials) and tries once more.
   */
  private async authorizedSend(path: string, scope: string, headers: Record<string, string>, signal?: AbortSignal): Promise<HttpResponse> {
    const target = await this.url(path);
    const cached = this.authorizations.get(scope);
    const authorization = cached && cached.expiresAt > Date.now() ? cached.header : undefined;
    const first = await this.send(target, { headers: authorization ? { ...headers, authorization } : headers, signal, idleTimeoutMs: this.options.idleTimeoutMs });
    if (first.status !== 401) return first;
    const challenges = parseChallenges(first.headers['www-authenticate']);
    discard(first);
    const header = await this.answerChallenge(challenges, scope, signal);
    const second = await this.send(target, { headers: { ...headers, authorization: header }, signal, idleTimeoutMs: this.options.idleTimeoutMs });
    if (second.status === 401) {
      discard(second);
      throw this.refused(scope);
    }
    return second;
  }

  private refused(scope: string): AltoError {
    const saved = this.options.credentials();
    return errors.forbidden(
      saved
        ? `${this.registry} refused the saved credentials of "${saved.username}" for ${scope}; check them with "alto registry login ${this.registry}"`
        : `${this.registry} needs credentials for ${scope}; save them with "alto registry login ${this.registry}"`,
    );
  }

  private async answerChallenge(challenges: Challenge[], scope: string, signal?: AbortSignal, credentials = this.options.credentials()): Promise<string> {
    const bearer = challenges.find((challenge) => challenge.scheme === 'bearer');
    if (bearer) {
      const { header, expiresAt } = await this.fetchToken(bearer, scope, credentials, signal);
      this.authorizations.set(scope, { header, expiresAt });
      return header;
    }
    if (challenges.some((challenge) => challenge.scheme === 'basic')) {
      if (!credentials) throw this.refused(scope);
      const header = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
      this.authorizations.set(scope, { header, expiresAt: Number.POSITIVE_INFINITY });
      return header;
    }
    throw errors.forbidden(`${this.registry} asked for authentication of a kind Alto does not speak (${challenges.map((challenge) => challenge.scheme).join(', ') || 'no WWW-Authenticate challenge'})`);
  }

  /** The token flow of the distribution spec: GET realm?service=&scope=, with basic credentials if saved. */
  private async fetchToken(
    challenge: Challenge,
    scope: string,
    credentials: RegistryCredentials | undefined,
    signal?: AbortSignal,
  ): Promise<{ header: string; expiresAt: number }> {
    const realm = challenge.params.realm;
    if (!realm) throw errors.forbidden(`${this.registry} sent a Bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw errors.forbidden(`${this.registry} sent a Bearer challenge whose realm "${realm}" is not a URL`);
    }
    // Plain HTTP only to a token server on this machine, or on the host of a registry that may
    // itself speak plain HTTP: credentials must not cross a network in the clear.
    const sameHost = url.hostname === new URL(`http://${this.host}`).hostname;
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && (isLoopbackRegistry(url.host) || (sameHost && this.mayUseHttp)))) {
      throw errors.forbidden(`${this.registry} asks for tokens from ${realm}, which is not HTTPS; refused`);
    }
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    if (scope) url.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    if (credentials) headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    const response = await this.send(url, { headers, signal, idleTimeoutMs: this.options.idleTimeoutMs });
    if (response.status === 401 || response.status === 403) {
      discard(response);
      throw credentials
        ? errors.forbidden(`the token server of ${this.registry} refused the saved credentials of "${credentials.username}"; check them with "alto registry login ${this.registry}"`)
        : this.refused(scope);
    }
    if (response.status !== 200) {
      const body = await readBody(response, 64 * 1024).catch(() => Buffer.alloc(0));
      throw upstreamError(`the token server of ${this.registry} answered ${response.status}: ${body.toString('utf8').slice(0, 200)}`);
    }
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse((await readBody(response, MAX_DOCUMENT_BYTES)).toString('utf8'));
    } catch (error) {
      if (error instanceof NetworkError) throw error;
      throw upstreamError(`the token server of ${this.registry} answered with something other than JSON`);
    }
    const token = body.token ?? body.access_token;
    if (!token) throw upstreamError(`the token server of ${this.registry} answered without a token`);
    const seconds = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_SECONDS;
    // Renewed a little early so a request never leaves with a token about to expire.
    return { header: `Bearer ${token}`, expiresAt: Date.now() + Math.max(1, seconds - 10) * 1000 };
  }

  /** Turns a registry's error answer into an error for the user. */
  private async failure(response: HttpResponse, what: string): Promise<AltoError> {
    const raw = await readBody(response, 64 * 1024).catch(() => Buffer.alloc(0));
    let detail = raw.toString('utf8').slice(0, 300);
    let code: string | undefined;
    try {
      const body = JSON.parse(raw.toString('utf8')) as RegistryErrorBody;
      if (body.errors?.length) {
        code = body.errors[0].code;
        detail = body.errors.map((error) => `${error.code}: ${error.message ?? ''}`).join('; ');
      }
    } catch {
      // Not JSON: keep the text.
    }
    if (response.status === 404 || code === 'MANIFEST_UNKNOWN' || code === 'NAME_UNKNOWN' || code === 'BLOB_UNKNOWN') {
      return errors.notFound(`${what} was not found on ${this.registry} (${detail || response.status})`);
    }
    if (response.status === 403 || code === 'DENIED' || code === 'UNAUTHORIZED') {
      return errors.forbidden(`${this.registry} denied access to ${what} (${detail || response.status}); save credentials with "alto registry login ${this.registry}"`);
    }
    if (response.status === 429 || code === 'TOOMANYREQUESTS') {
      return errors.tooManyRequests(`${this.registry} is rate-limiting pulls (${detail || 429}); try again later or log in`);
    }
    return upstreamError(`${this.registry} answered ${response.status} for ${what}: ${detail}`);
  }

  /** Fetches a manifest or index by tag or digest, with its bytes exactly as served. */
  async getManifest(repository: string, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const what = `${this.registry}/${repository}:${reference}`.replace(/:(sha\d+:)/, '@$1');
    return withRetries(async () => {
      const response = await this.authorizedSend(`${repository}/manifests/${reference}`, `repository:${repository}:pull`, { accept: MANIFEST_ACCEPT }, signal);
      if (TRANSIENT_STATUSES.has(response.status) && response.status !== 429) {
        discard(response);
        throw new NetworkError(`${this.registry} answered ${response.status} for ${what}`);
      }
      if (response.status !== 200) throw await this.failure(response, what);
      const bytes = await readBody(response, MAX_DOCUMENT_BYTES);
      const header = response.headers['docker-content-digest'];
      const digest = typeof header === 'string' && header.startsWith('sha512:') ? digestOf(bytes, 'sha512') : digestOf(bytes);
      return { bytes, mediaType: response.headers['content-type'], digest };
    });
  }

  /** Opens a blob from `offset` (asking with `Range`); redirects to storage are followed. */
  async openBlob(repository: string, digest: string, offset: number, signal?: AbortSignal): Promise<OpenedBlob> {
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const response = await this.authorizedSend(`${repository}/blobs/${digest}`, `repository:${repository}:pull`, headers, signal);
    if (response.status === 206) {
      const start = /^bytes (\d+)-/.exec(String(response.headers['content-range'] ?? ''));
      const length = Number(response.headers['content-length']);
      return { stream: response.body, offset: start ? Number(start[1]) : offset, length: Number.isFinite(length) ? length : undefined };
    }
    if (response.status === 200) {
      const length = Number(response.headers['content-length']);
      return { stream: response.body, offset: 0, length: Number.isFinite(length) ? length : undefined };
    }
    if (response.status === 416) {
      discard(response);
      // The partial file is longer than the blob: start over.
      if (offset > 0) return this.openBlob(repository, digest, 0, signal);
    }
    if (TRANSIENT_STATUSES.has(response.status)) {
      discard(response);
      throw new NetworkError(`${this.registry} answered ${response.status} for blob ${digest}`);
    }
    throw await this.failure(response, `blob ${digest} of ${this.registry}/${repository}`);
  }

  /**
   * Checks credentials the way `docker login` does: `/v2/` answered with them (basic), or a
   * token granted for them by the registry's token server.
   */
  async checkCredentials(credentials: RegistryCredentials, signal?: AbortSignal): Promise<void> {
    const target = await this.url('');
    const first = await this.send(target, { signal, idleTimeoutMs: this.options.idleTimeoutMs });
    discard(first);
    if (first.status === 200) return; // An open registry accepts anyone; nothing to check.
    if (first.status !== 401) throw upstreamError(`${this.registry} answered ${first.status} at /v2/`);
    const challenges = parseChallenges(first.headers['www-authenticate']);
    const bearer = challenges.find((challenge) => challenge.scheme === 'bearer');
    if (bearer) {
      await this.fetchToken(bearer, '', credentials, signal);
      return;
    }
    const header = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    const second = await this.send(target, { headers: { authorization: header }, signal, idleTimeoutMs: this.options.idleTimeoutMs });
    discard(second);
    if (second.status === 401 || second.status === 403) {
      throw errors.forbidden(`${this.registry} refused the credentials of "${credentials.username}"`);
    }
    if (second.status !== 200) throw upstreamError(`${this.registry} answered ${second.status} at /v2/`);
  }

  /** Forgets cached tokens (after credentials change). */
  forgetAuthorizations(): void {
    this.authorizations.clear();
  }
}

/**
 * The schemes a registry may be reached by, in the order tried: HTTPS only, unless the registry
 * is on this machine (loopback) or the operator marked it insecure, when plain HTTP may follow.
 */
export function schemesFor(registry: string, insecure = false): ('https' | 'http')[] {
  return insecure || isLoopbackRegistry(registry) ? ['https', 'http'] : ['https'];
}

/** A registry or its storage misbehaved: the request was fine, the answer was not. */
export function upstreamError(detail: string): AltoError {
  return new AltoError('unavailable', 502, detail);
}

/** Runs `task`, retrying transport failures with a growing pause; HTTP answers are final. */
export async function withRetries<T>(task: () => Promise<T>, attempts = 4): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await task();
    } catch (error) {
      if (!(error instanceof NetworkError) || attempt >= attempts) {
        if (error instanceof NetworkError) throw upstreamError(`${error.message} (after ${attempt} attempts)`);
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** (attempt - 1)));
    }
  }
}
