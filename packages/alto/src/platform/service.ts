/**
 * @module platform/service
 * How a service declares its endpoints, once: name, request and response schema (zod), price,
 * who may call it, whether it streams, an example, and the handler. The edge derives routing,
 * validation, metering and the OpenAPI document from this; the SDK and CLI derive from that.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import type { Logger } from '../kit/logger.js';
import type { KeyRole } from '../store/control.js';
import type { Platform } from './platform.js';
import type { ProjectSection } from './transfer/section.js';

/**
 * Who may call an endpoint.
 * - `key`: any active key whose scopes include the service (the default).
 * - `manage`: an admin key or an account owner's key; project keys are refused.
 * - `public`: no key needed (sign-up and login).
 */
export type Access = 'key' | 'manage' | 'public';

/** Everything a handler knows about the call it serves, whoever made it. */
interface CallContextBase {
  requestId: string;
  platform: Platform;
  log: Logger;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /**
   * The origin the caller reached the server at (`http://host:port`, from the Host and
   * X-Forwarded-Proto headers), for links in responses such as short URLs.
   */
  origin?: string;
  /**
   * The network address of the caller (the TCP peer; an IPv4-mapped IPv6 address is written as
   * IPv4), for per-address limits such as failed logins. Behind a proxy it is the proxy's.
   */
  clientAddress?: string;
}

/**
 * The context of an endpoint that needs a key (`key` or `manage` access): the tenant is always
 * there, checked by the edge before the handler runs, so no handler can forget the check.
 */
export interface CallContext extends CallContextBase {
  tenant: Tenant;
}

/** The context of a `public` endpoint: a tenant only when the caller sent a key anyway. */
export interface PublicCallContext extends CallContextBase {
  tenant: Tenant | undefined;
}

export interface Tenant {
  accountId: string;
  projectId: string;
  projectName: string;
  environment: string;
  keyId: string;
  /** The first characters of the key, as listings show them (the request log keeps them). */
  keyPrefix?: string;
  role: KeyRole;
  scopes: string[];
  /** The storage namespace of this project and environment; every storage port takes it. */
  namespace: string;
}

interface EndpointBase<Request extends z.ZodType, Response extends z.ZodType> {
  description: string;
  request: Request;
  response: Response;
  /** A request body that works, shown in the OpenAPI document, the console and the CLI help. */
  example: z.input<Request>;
  /** Price per call in micro-units of the currency (1 = one millionth). Default: the service's. */
  priceMicros?: number;
  /**
   * For endpoints that carry data inline (space/Create takes an object as base64): the largest
   * body they accept when that is more than the server's limit, and what a caller whose body
   * is larger still should do instead; the edge's 413 says it.
   */
  largeBody?: { maxBytes: number; hint: string };
}

export interface UnaryEndpoint<Request extends z.ZodType = z.ZodType, Response extends z.ZodType = z.ZodType>
  extends EndpointBase<Request, Response> {
  stream?: false;
  access?: 'key' | 'manage';
  handler: (request: z.output<Request>, context: CallContext) => Promise<z.input<Response>> | z.input<Response>;
}

/** A unary endpoint anyone may call, with or without a key (sign-up, login, the price list). */
export interface PublicEndpoint<Request extends z.ZodType = z.ZodType, Response extends z.ZodType = z.ZodType>
  extends EndpointBase<Request, Response> {
  stream?: false;
  access: 'public';
  handler: (request: z.output<Request>, context: PublicCallContext) => Promise<z.input<Response>> | z.input<Response>;
}

export interface StreamEndpoint<Request extends z.ZodType = z.ZodType, Response extends z.ZodType = z.ZodType>
  extends EndpointBase<Request, Response> {
  stream: true;
  access?: 'key' | 'manage';
  /** Yields one response message per item; the stream ends when the iterator does. */
  handler: (request: z.output<Request>, context: CallContext) => AsyncIterable<z.input<Response>>;
}

export type EndpointDefinition = UnaryEndpoint<any, any> | PublicEndpoint<any, any> | StreamEndpoint<any, any>;

export interface ServiceDefinition {
  /** Lower-case service name, the first path segment after `/v1/`. */
  name: string;
  description: string;
  /** Default price per call in micro-units. */
  priceMicros: number;
  /** Components this service needs started before the instance is ready. */
  components?: Component<unknown>[];
  endpoints: Record<string, EndpointDefinition>;
  /** Plain HTTP routes outside /v1 that the service serves itself (e.g. `/u/{id}` redirects). */
  httpRoutes?: HttpRoute[];
  /**
   * Deletes everything the service keeps for a project (all its environments: namespaces
   * starting with `${projectId}/`). Called after `projects/Delete` removed the project.
   */
  deleteProjectData?(projectId: string, platform: Platform): Promise<void>;
  /** The service's part of a project archive (`alto projects export`, `push`, `pull`). */
  transfer?: ProjectSection;
}

/**
 * A plain HTTP route under a path prefix, served before the edge's own 404. The handler does
 * its own authentication: these routes are for public things such as redirects and downloads.
 */
export interface HttpRoute {
  /** Path prefix, e.g. `/u/`. */
  prefix: string;
  methods: string[];
  description: string;
  handle(request: IncomingMessage, response: ServerResponse, url: URL, platform: Platform): Promise<void>;
}

/** Declares one unary endpoint; the handler's request type follows from the schema. */
export function endpoint<Request extends z.ZodType, Response extends z.ZodType>(
  definition: UnaryEndpoint<Request, Response>,
): UnaryEndpoint<Request, Response> {
  return definition;
}

/** Declares one unary endpoint that needs no key; its handler's tenant may be undefined. */
export function publicEndpoint<Request extends z.ZodType, Response extends z.ZodType>(
  definition: Omit<PublicEndpoint<Request, Response>, 'access'>,
): PublicEndpoint<Request, Response> {
  return { ...definition, access: 'public' };
}

/** Declares one streaming endpoint (websocket on the same path). */
export function streamEndpoint<Request extends z.ZodType, Response extends z.ZodType>(
  definition: Omit<StreamEndpoint<Request, Response>, 'stream'>,
): StreamEndpoint<Request, Response> {
  return { ...definition, stream: true };
}

export function defineService<Definition extends ServiceDefinition>(definition: Definition): Definition {
  return definition;
}

/**
 * A piece of per-instance state a service needs (a database engine, a scheduler), created once
 * by the platform at start and closed at shutdown. Handlers reach it with `platform.use(c)`.
 */
export interface Component<T> {
  name: string;
  create(platform: Platform): T | Promise<T>;
}

export function component<T>(name: string, create: (platform: Platform) => T | Promise<T>): Component<T> {
  return { name, create };
}
