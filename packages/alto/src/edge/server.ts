/**
 * @module edge/server
 * Starts one Alto instance: stores, platform, services, and the HTTP server that fronts them
 * (API, websocket streams, health, metrics, OpenAPI). Returns a handle whose `close()` stops
 * accepting work, lets calls in flight finish, flushes metering and closes the stores.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { Duplex } from 'node:stream';
import { join, resolve } from 'node:path';
import { errors, isAltoError } from '../kit/errors.js';
import { writeFileAtomic } from '../kit/files.js';
import { createLogger, type Logger } from '../kit/logger.js';
import { startTracing, stopTracing } from '../kit/tracing.js';
import { Platform } from '../platform/platform.js';
import { openStores } from '../store/index.js';
import { limitsFromEnvironment } from '../blocks/db/records.js';
import { VERSION } from '../version.js';
import { Api } from './api.js';
import { capConnections, DEFAULT_CONNECTION_CAPS, PeerAddresses, type ConnectionCaps } from './connections.js';
import { credentialsOf, DEFAULT_BODY_TIMEOUT_MS, requestIdOf, requestTargetOf, sendJson, type RequestTarget } from './http.js';
import { traceStoreCalls } from '../store/traced.js';
import { recordWake } from './traces.js';
import { createEdgeMetrics, registerAppMetrics, registerBackupMetrics, registerRequestLogMetrics } from './metrics.js';
import { BackupSchedule } from '../store/backup/schedule.js';
import { claimVolumeForCopy } from '../compute/sandbox/volumes.js';
import { snapshotVolumeInUse } from '../compute/sandbox/volume-snapshot.js';
import { createConsole } from './console.js';
import { buildOpenApiDocument } from './openapi.js';
import { appsComponent } from '../compute/apps/service.js';
import { ownRegistryNames } from '../compute/images/distribution.js';
import { imagesComponent } from '../compute/images/service.js';
import { startNodeMembership, type NodeMembership } from '../compute/cluster/membership.js';
import { joinCluster } from '../compute/cluster/cluster.js';
import { acceptTcpTunnel, isTunnelRequest } from '../compute/cluster/tcp-tunnel.js';
import { acceptHostedInstanceRequest, isHostedInstanceRequest } from '../compute/cluster/hosted-instances.js';
import type { AppAddress, AppResolver } from '../compute/apps/gateway.js';
import { listNodes } from '../compute/cluster/service.js';
import { AppProxy, TcpForwarder } from './proxy.js';
import { ConnectionForwarder } from './forward.js';
import { ApiLane } from './lane.js';
import { CertificateBook } from './certificates.js';
import { HSTS_VALUE, TlsListener } from './tls.js';
import { CustomDomains } from './custom-domains.js';
import { domainResolves } from '../compute/apps/domains.js';
import { AcmeCertificates, ACME_CHALLENGE_PREFIX, type ChallengeKind } from './acme.js';
import { allServices } from './registry.js';
import { DEFAULT_ENVIRONMENT } from '../platform/tenancy.js';

export interface AltoOptions {
  port: number;
  host?: string;
  dataDir: string;
  /** ALTO_ADMIN_KEY: use this admin key instead of generating one. */
  adminKey?: string;
  openSignup?: boolean;
  maxBodyBytes?: number;
  /** `--store postgres://...` */
  postgresUrl?: string;
  /** `--cache redis://...` */
  redisUrl?: string;
  /** `--events nats://...`: events and mq on NATS JetStream. */
  natsUrl?: string;
  /** `--objects s3://BUCKET?endpoint=...&region=...&path_style=1`: space objects in an S3-compatible bucket. */
  objectsUrl?: string;
  /** How long a websocket stream waits for a client that reads nothing (default 30 s). */
  streamStallTimeoutMs?: number;
  /** `--smtp smtp://user:pass@host:port`: the instance's mail server; none means outbox only. */
  smtpUrl?: string;
  /** Usage records and limits; false turns both off (`ALTO_METERING=off`). Default on. */
  metering?: boolean;
  /** How often usage records are written, in ms (`ALTO_USAGE_FLUSH_MS`, default 1000). */
  usageFlushMs?: number;
  /** `--sandbox auto|microvm|process` (ALTO_SANDBOX): how apps run. Default auto. */
  sandbox?: 'auto' | 'microvm' | 'process';
  /** `--apps-domain` (ALTO_APPS_DOMAIN): apps answer at `<app>.<project>.<domain>`. Default localhost. */
  appsDomain?: string;
  /** Open connections in all and per client address, on the edge and on apps' TCP ports (ALTO_MAX_CONNECTIONS, ALTO_MAX_CONNECTIONS_PER_CLIENT). */
  connectionCaps?: ConnectionCaps;
  /** How long a client may take to send a request's headers (ALTO_HEADERS_TIMEOUT_MS, default 30 s). */
  headersTimeoutMs?: number;
  /** How long a request body may send nothing before it is cut with 408 (ALTO_BODY_TIMEOUT_MS, default 30 s). */
  bodyTimeoutMs?: number;
  /** `--node` (ALTO_NODE): this node's name in the cloud its store names; default the host name. */
  node?: string;
  /** `--advertise` (ALTO_ADVERTISE): the URL other nodes reach this one at; default the URL it listens at. */
  advertiseUrl?: string;
  /** `--https-port` (ALTO_HTTPS_PORT): HTTPS (HTTP/2 and HTTP/1.1) on this port too; 0 picks one. */
  httpsPort?: number;
  /** `--tls-cert`/`--tls-key`: the operator's certificate and key files, served for every name and read again when they change. */
  tlsCertificateFile?: string;
  tlsKeyFile?: string;
  /** `--domain` (ALTO_DOMAIN): the console's and the API's own name; with `acme`, a certificate is obtained for it. */
  domain?: string;
  /** `--acme-email` and friends: certificates from an ACME directory for the hosts Alto serves (edge/acme.ts). */
  acme?: {
    email: string;
    /** `--acme-directory` (ALTO_ACME_DIRECTORY); default Let's Encrypt production. */
    directoryUrl: string;
    /** ALTO_ACME_CHALLENGES: which challenges to answer, in order (default http-01, tls-alpn-01). */
    challenges: readonly ChallengeKind[];
    /** ALTO_ACME_CHECK_MS: how often certificates due are looked for. */
    checkEveryMs?: number;
    /** ALTO_ACME_RETRY_MS: the first retry's delay after a failure. */
    retryBaseMs?: number;
  };
  /** ALTO_DOMAIN_CHECK_MS: how often the apps' custom domains are read again and checked in DNS (default 5 s). */
  domainCheckMs?: number;
  /** `--backup-to`, `--backup-every`, `--backup-keep`: scheduled backups of this data folder. */
  backup?: { to: string; everyMs: number; keep: number };
  logger?: Logger;
}

export interface RunningAlto {
  url: string;
  port: number;
  /** The HTTPS port when `httpsPort` was given. */
  httpsPort?: number;
  platform: Platform;
  /** Set on the first start, when Alto generated the admin key. */
  generatedAdminKey?: string;
  adminKeyPath: string;
  /** This process as a node of the cloud (compute/cluster/membership.ts). */
  membership: NodeMembership;
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
/** How long a shutdown waits for calls in flight before closing their connections. */
const DRAIN_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 30_000;
const IDLE_SOCKET_TIMEOUT_MS = 120_000;

export async function startAlto(options: AltoOptions): Promise<RunningAlto> {
  const log = options.logger ?? createLogger();
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // The operator's certificate is read before anything starts: a pair that does not load ends the start.
  const certificates = new CertificateBook(log.child({ component: 'tls' }));
  if (options.tlsCertificateFile && options.tlsKeyFile) certificates.useFiles(options.tlsCertificateFile, options.tlsKeyFile);

  // OpenTelemetry traces when the standard variables ask for them (kit/tracing.ts); else nothing is loaded.
  const tracer = await startTracing(process.env, log, VERSION);
  const stores = await openStores({
    dataDir,
    postgresUrl: options.postgresUrl,
    redisUrl: options.redisUrl,
    natsUrl: options.natsUrl,
    objectsUrl: options.objectsUrl,
    documentLimits: limitsFromEnvironment(),
  });
  if (tracer) traceStoreCalls(stores, tracer);
  const platform = new Platform(
    {
      dataDir,
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      openSignup: options.openSignup ?? false,
      metering: options.metering ?? true,
      usageFlushMs: options.usageFlushMs,
      smtpUrl: options.smtpUrl,
      sandbox: options.sandbox ?? 'auto',
      appsDomain: options.appsDomain ?? 'localhost',
      version: VERSION,
    },
    log,
    stores,
    allServices(),
  );
  platform.readiness.expect('http');
  try {
    // Before anything is written: a process with another master key must not join the cloud.
    await platform.checkMasterKey();
  } catch (error) {
    await stores.close();
    throw error;
  }

  const adminKeyPath = join(dataDir, 'admin-key');
  const { generatedAdminKey } = await platform.tenancy.bootstrap(options.adminKey);
  const keyToSave = generatedAdminKey ?? options.adminKey;
  if (keyToSave) {
    writeFileAtomic(adminKeyPath, keyToSave + '\n', 0o600);
    chmodSync(adminKeyPath, 0o600);
  }
  await platform.start();

  const apps = platform.use(appsComponent);
  // An app's request that waited for its instance to wake carries the wake's time (edge/traces.ts).
  if (tracer) apps.onActivation(recordWake);
  // Requests whose Host is <app>.<project>.<apps domain> go to the app, before any other routing.
  // This node's apps, and once it has joined the cloud, other nodes' apps relayed to them.
  let routing: AppResolver = apps.gateway;
  const resolver: AppResolver = { acquire: (address, kind, relayed) => routing.acquire(address, kind, relayed), tryAcquire: (address) => routing.tryAcquire?.(address) };
  // The apps' custom domains; with ACME, each one's certificate is asked for once its name resolves.
  const customDomains = new CustomDomains({
    stores,
    demand: (domain) => acme?.demand(domain) ?? Promise.resolve(false),
    tracked: (domain) => acme?.tracks(domain) ?? false,
    everyMs: options.domainCheckMs,
    log: log.child({ component: 'domains' }),
  });
  const appProxy = new AppProxy({
    domain: platform.config.appsDomain ?? 'localhost',
    resolver,
    log: log.child({ component: 'proxy' }),
    aliasOf: (host) => customDomains.addressOf(host),
    requestLog: platform.requestLog,
  });
  // The web console's built files, when packages/console was built (else `/` answers JSON only).
  const webConsole = createConsole(log);
  const metrics = createEdgeMetrics();
  registerAppMetrics(metrics.registry, apps);
  if (platform.requestLog) registerRequestLogMetrics(metrics.registry, platform.requestLog);
  // Copies from this process's own database connection, claiming volumes as its instances do.
  const backups = options.backup
    ? new BackupSchedule({
        ...options.backup,
        dataDir,
        postgres: Boolean(options.postgresUrl),
        postgresUrl: options.postgresUrl,
        objectsInBucket: Boolean(options.objectsUrl),
        database: stores.sqlite,
        claimVolume: claimVolumeForCopy,
        snapshotVolumeInUse,
        log: log.child({ component: 'backup' }),
      })
    : undefined;
  if (backups) registerBackupMetrics(metrics.registry, backups);
  const api = new Api(platform, metrics, log, options.streamStallTimeoutMs, options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS);
  const httpRoutes = platform.listServices().flatMap((service) => service.httpRoutes ?? []);
  const openApiDocument = JSON.stringify(buildOpenApiDocument(platform.listServices(), VERSION));

  // No limit on a whole request (Node's default of 5 minutes cuts off a slow 1 GiB upload), but
  // headers must arrive within headersTimeoutMs (408), an API body that stalls is cut (408, see
  // readBody), and a connection that moves no bytes for two minutes is closed. Websockets clear
  // the idle timeout when they take the socket over.
  const headersTimeoutMs = options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  const connectionCaps = options.connectionCaps ?? DEFAULT_CONNECTION_CAPS;
  /** Every request of the plain port and of the HTTPS one (edge/tls.ts). */
  function handleRequest(request: IncomingMessage, response: ServerResponse): void {
    if (acme && request.url?.startsWith(ACME_CHALLENGE_PREFIX)) return answerHttpChallenge(request, response);
    if (appProxy.handleRequest(request, response)) return;
    const target = requestTargetOf(request.url ?? '/');
    const path = target.pathname;
    // API calls go straight in: handleHttp answers its own errors and never throws.
    if (path.startsWith('/v1/') && path !== '/v1/openapi.json' && path !== '/v1/status') return api.handleHttp(request, response, target);
    void route(request, response, target).catch((error) => {
      log.error({ err: error }, 'unexpected error outside an API call');
      if (!response.headersSent) sendJson(response, 500, errors.internal().toBody());
      else response.destroy();
    });
  }
  const server = createServer(
    {
      requestTimeout: 0,
      headersTimeout: headersTimeoutMs,
      // Node checks the headers timeout this often: a fraction of it, so it holds within a quarter.
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(headersTimeoutMs / 4))),
    },
    options.httpsPort === undefined ? handleRequest : handlePlainRequest,
  );
  /** On the plain port with HTTPS on: a host with a certificate is sent to HTTPS, but for ACME challenges and health checks. */
  function handlePlainRequest(request: IncomingMessage, response: ServerResponse): void {
    const url = request.url ?? '/';
    const host = hostnameOf(request.headers.host ?? '');
    if (host === '' || url.startsWith(ACME_CHALLENGE_PREFIX) || url === '/livez' || url === '/readyz' || !certificates.has(host)) return handleRequest(request, response);
    const location = `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${url.startsWith('/') ? url : '/'}`;
    response.writeHead(308, { location, 'content-length': 0 });
    response.end();
  }
  /** Over HTTPS: browsers are told to keep to it (apps' answers get the header from the proxy, edge/proxy.ts). */
  function handleTlsRequest(request: IncomingMessage, response: ServerResponse): void {
    if (!appProxy.addressOf(request.headers.host)) response.setHeader('strict-transport-security', HSTS_VALUE);
    handleRequest(request, response);
  }
  // Connections whose requests name apps are forwarded at the connection level; Node's HTTP
  // server gets every other one (edge/forward.ts).
  const forwarder = new ConnectionForwarder({
    // A host with a certificate in play is served by Node's server: ACME challenges, then the redirect to HTTPS.
    addressOf: options.httpsPort === undefined ? (host) => appProxy.addressOf(host) : (host) => (plainHandledHere(hostnameOf(host)) ? undefined : appProxy.addressOf(host)),
    resolver,
    log: log.child({ component: 'proxy' }),
    headersTimeoutMs,
    keepAliveTimeoutMs: server.keepAliveTimeout,
    idleTimeoutMs: IDLE_SOCKET_TIMEOUT_MS,
    requestLog: platform.requestLog,
    // Plain API calls are answered off the connection, without Node's request objects (edge/lane.ts).
    // Not for a host with a certificate in play: Node's server redirects those to HTTPS.
    lane: new ApiLane(api, server.keepAliveTimeout, options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS, options.httpsPort === undefined ? undefined : (host) => plainHandledHere(hostnameOf(host))),
  });
  forwarder.interpose(server);
  // Other nodes relay their clients' requests for this node's apps: not held to the per-client cap.
  const peerAddresses = new PeerAddresses(async (host) => (await lookup(host, { all: true })).map((entry) => entry.address));
  capConnections(server, connectionCaps, log.child({ component: 'edge' }), (address) => peerAddresses.has(address));

  /** Whether a plain request for `host` is Node's server's to answer: it has a certificate (redirected) or one in play (challenges). */
  function plainHandledHere(host: string): boolean {
    return certificates.has(host) || acme?.tracks(host) === true;
  }

  /** An ACME server's HTTP-01 validation: the token's key authorization, from whichever node stored it. */
  function answerHttpChallenge(request: IncomingMessage, response: ServerResponse): void {
    const token = (request.url ?? '').slice(ACME_CHALLENGE_PREFIX.length);
    void acme!.httpChallenge(token).then(
      (keyAuthorization) => {
        if (keyAuthorization === undefined) return sendJson(response, 404, errors.notFound('no ACME challenge is pending under this token').toBody(requestIdOf(request)));
        response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(keyAuthorization) });
        response.end(keyAuthorization);
      },
      (error: unknown) => {
        log.error({ err: error }, 'reading an ACME challenge failed');
        sendJson(response, 500, errors.internal().toBody(requestIdOf(request)));
      },
    );
  }

  /** Everything but API calls and apps: service routes, the console, health, metrics, status, OpenAPI. */
  async function route(request: IncomingMessage, response: ServerResponse, target: RequestTarget): Promise<void> {
    const path = target.pathname;
    const url = target instanceof URL ? target : new URL(request.url ?? '/', 'http://alto.local');
    const serviceRoute = httpRoutes.find((candidate) => path.startsWith(candidate.prefix));
    if (serviceRoute && serviceRoute.methods.includes(request.method ?? 'GET')) {
      return serviceRoute.handle(request, response, url, platform);
    }
    if (webConsole?.handle(request, response, url)) return;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      sendJson(response, 405, errors.methodNotAllowed(`${path} answers GET only`).toBody());
      return;
    }
    switch (path) {
      case '/livez':
        sendJson(response, 200, { status: 'ok' });
        return;
      case '/readyz': {
        const ready = platform.readiness.isReady;
        sendJson(response, ready ? 200 : 503, { status: ready ? 'ready' : 'starting', parts: platform.readiness.snapshot() });
        return;
      }
      case '/metrics': {
        // The whole machine's figures (every project's calls, the process): the admin's only.
        if (!(await isAdmin(request, response))) return;
        const text = await metrics.registry.metrics();
        response.writeHead(200, { 'content-type': metrics.registry.contentType });
        response.end(text);
        return;
      }
      case '/v1/openapi.json':
        response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-cache' });
        response.end(openApiDocument);
        return;
      case '/v1/status':
        return sendStatus(request, response);
      case '/':
        sendJson(response, 200, {
          name: 'alto',
          version: VERSION,
          openapi: '/v1/openapi.json',
          services: platform.listServices().map((service) => service.name),
        });
        return;
      default:
        sendJson(response, 404, errors.notFound(`nothing at ${path}; the API lives under /v1/`).toBody(requestIdOf(request)));
    }
  }

  /** True for the admin key; otherwise answers 401 (no or bad key) or 403 (another key) and returns false. */
  async function isAdmin(request: IncomingMessage, response: ServerResponse): Promise<boolean> {
    const requestId = requestIdOf(request);
    try {
      const credentials = credentialsOf(request);
      if (!credentials) throw errors.unauthorized('the admin key is required: send "Authorization: Bearer <admin key>"');
      const tenant = await platform.tenancy.authenticate(credentials);
      if (tenant.role !== 'admin') throw errors.forbidden('only the admin key may read this');
      return true;
    } catch (error) {
      const failure = isAltoError(error) ? error : errors.internal();
      if (!isAltoError(error)) log.error({ err: error, req_id: requestId }, 'admin check failed');
      sendJson(response, failure.status, failure.toBody(requestId));
      return false;
    }
  }

  /** What `/v1/status` says of the stores to a key that is not the admin's: kinds, no paths or hosts. */
  const storeKinds = ['sqlite (WAL)', options.postgresUrl && 'postgres', options.redisUrl && 'redis', options.natsUrl && 'nats', options.objectsUrl && 'objects on s3'].filter(Boolean).join(', ');

  async function sendStatus(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const requestId = requestIdOf(request);
    try {
      const credentials = credentialsOf(request);
      if (!credentials) throw errors.unauthorized('an API key is required: send "Authorization: Bearer <key>"');
      const tenant = await platform.tenancy.authenticate(credentials);
      // Where things are on the host (data folder, store addresses, why a driver was chosen) is the admin's to see.
      const admin = tenant.role === 'admin';
      const sandbox = apps.sandboxStatus();
      sendJson(response, 200, {
        version: VERSION,
        ready: platform.readiness.isReady,
        parts: platform.readiness.snapshot(),
        uptime_seconds: Math.round((Date.now() - platform.startedAt) / 1000),
        store: admin ? stores.description : storeKinds,
        services: platform.listServices().map((service) => service.name),
        sandbox: admin ? sandbox : withoutHostDetails(sandbox),
        apps_domain: platform.config.appsDomain,
        ...(admin && tls ? { https: { port: httpsPort, ...(acme ? { acme_directory: options.acme!.directoryUrl, certificates: acme.statuses() } : {}) } } : {}),
        ...(admin ? { nodes: await listNodes(platform) } : {}),
        ...(admin && backups ? { backups: backups.status() } : {}),
        key: { project: tenant.projectName, environment: tenant.environment, role: tenant.role, scopes: tenant.scopes },
      });
    } catch (error) {
      const failure = isAltoError(error) ? error : errors.internal();
      if (!isAltoError(error)) log.error({ err: error, req_id: requestId }, 'status failed');
      sendJson(response, failure.status, failure.toBody(requestId));
    }
  }

  server.setTimeout(IDLE_SOCKET_TIMEOUT_MS);

  function handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Node lets go of an upgraded socket, error listener included: a reset while the key is
    // checked would otherwise be thrown. Whoever takes the socket over adds its own.
    socket.on('error', () => socket.destroy());
    // Another node's connection to a TCP app this node runs (compute/cluster/tcp-tunnel.ts).
    if (isTunnelRequest(request)) return void acceptTcpTunnel(platform, request, socket, head);
    // Another node's instance placed here, and connections to it (compute/cluster/hosted-instances.ts).
    if (isHostedInstanceRequest(request)) return acceptHostedInstanceRequest(platform, request, socket, head);
    if (appProxy.handleUpgrade(request, socket, head)) return;
    const url = new URL(request.url ?? '/', 'http://alto.local');
    if (!url.pathname.startsWith('/v1/')) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    void api.handleUpgrade(request, socket, head, url).catch((error) => {
      log.error({ err: error }, 'websocket upgrade failed');
      socket.destroy();
    });
  }
  server.on('upgrade', handleUpgrade);

  await new Promise<void>((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolvePromise();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${options.host && options.host !== '0.0.0.0' ? options.host : 'localhost'}:${port}`;
  // Image references that name this Alto (`localhost:<port>/<project>/web:v1`) are its own registry's.
  platform.use(imagesComponent).repositories.answerAs(ownRegistryNames(port, [url, options.advertiseUrl, process.env.ALTO_PUBLIC_URL]));
  const tls =
    options.httpsPort === undefined
      ? undefined
      : new TlsListener({
          host: options.host ?? '0.0.0.0',
          port: options.httpsPort,
          certificates,
          onRequest: handleTlsRequest,
          onUpgrade: handleUpgrade,
          connectionCaps,
          // A node advertised at its https:// URL gets the other nodes' relayed requests here: not held to the per-client cap either.
          exemptFromClientCap: (address) => peerAddresses.has(address),
          headersTimeoutMs,
          idleTimeoutMs: IDLE_SOCKET_TIMEOUT_MS,
          log: log.child({ component: 'tls' }),
        });
  const acme = options.acme && tls ? startAcme(options.acme) : undefined;
  const httpsPort = await tls?.listen().catch(async (error: unknown) => {
    await new Promise<void>((done) => server.close(() => done()));
    forwarder.close();
    certificates.close();
    await appProxy.close();
    await platform.close();
    throw new Error(`cannot listen for HTTPS on port ${options.httpsPort}: ${(error as Error).message}`);
  });
  await acme?.start();
  if (acme && options.domain) void acme.demand(options.domain);
  await customDomains.start();

  /** Certificates for the console's domain, each app's host and each custom domain: no other name is asked for. */
  function startAcme(settings: NonNullable<AltoOptions['acme']>): AcmeCertificates {
    const manager = new AcmeCertificates({
      ...settings,
      store: stores.domains,
      lock: stores.leader,
      cipher: platform.masterKey().cipher,
      book: certificates,
      log: log.child({ component: 'acme' }),
      async serves(host) {
        if (host === options.domain) return true;
        // A custom domain counts once its name resolves (the challenge then proves it reaches Alto).
        if (await customDomains.has(host)) return domainResolves(host);
        const address = appProxy.addressOf(host);
        return address !== undefined && (await stores.apps.findByAddress(address.project, address.environment ?? DEFAULT_ENVIRONMENT, address.app)) !== undefined;
      },
    });
    certificates.onMissing = (host) => manager.contextOnDemand(host);
    certificates.onMissingChallenge = (host) => manager.tlsChallenge(host);
    manager.registerMetrics(metrics.registry);
    return manager;
  }
  // Relay ports: the edge ports of TCP apps other nodes run, their connections routed to those
  // nodes (compute/cluster/tcp-relay-ports.ts), by port.
  const relayPorts = new Map<number, TcpForwarder>();
  apps.attachEdge({
    port,
    // A TCP app gets its own port on the edge's address, in place of a relay port it had while another node ran it.
    async openTcpPort(address, requestedPort) {
      const relay = requestedPort ? relayPorts.get(requestedPort) : undefined;
      if (relay) {
        relayPorts.delete(requestedPort);
        await relay.close();
      }
      const forwarder = new TcpForwarder({ host: options.host ?? '0.0.0.0', port: requestedPort, address, resolver: apps.gateway, connectionCaps, log: log.child({ component: 'tcp' }) });
      return { port: await forwarder.listen(), close: () => forwarder.close() };
    },
  });
  const relayPortOpener = {
    async openRelayPort(address: AppAddress, relayPort: number) {
      const forwarder = new TcpForwarder({ host: options.host ?? '0.0.0.0', port: relayPort, address, resolver, connectionCaps, log: log.child({ component: 'tcp' }) });
      await forwarder.listen();
      relayPorts.set(relayPort, forwarder);
      return {
        close: async () => {
          if (relayPorts.get(relayPort) === forwarder) relayPorts.delete(relayPort);
          await forwarder.close();
        },
      };
    },
  };
  // Joins the cloud as a node once its URL is known; a name a live node holds ends the start.
  const membership = await startNodeMembership({ platform, name: options.node, advertiseUrl: options.advertiseUrl ?? url, log: log.child({ component: 'cluster' }) }).catch(async (error: unknown) => {
    await new Promise<void>((done) => server.close(() => done()));
    await tls?.close();
    tls?.force();
    await customDomains.close();
    await acme?.close();
    certificates.close();
    forwarder.close();
    await appProxy.close();
    await platform.close();
    throw error;
  });
  const cluster = await joinCluster(platform, membership, apps, log.child({ component: 'cluster' }), relayPortOpener);
  // Not awaited by the peer view: a slow name lookup must not hold its reads up.
  const refreshPeerAddresses = () => void peerAddresses.update(cluster.peers.liveNodes().filter((node) => node.id !== membership.id).map((node) => hostOf(node.advertiseUrl)));
  cluster.peers.onRefresh(refreshPeerAddresses);
  refreshPeerAddresses();
  routing = cluster.routing;
  await backups?.start();
  platform.readiness.ready('http');
  log.info({ url, port, ...(httpsPort !== undefined ? { https_port: httpsPort } : {}), data: dataDir, store: stores.description, version: VERSION }, 'listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    httpsPort,
    platform,
    generatedAdminKey,
    adminKeyPath,
    membership,
    close() {
      closing ??= (async () => {
        platform.readiness.notReady('http');
        await backups?.close();
        await cluster.stop();
        await membership.stop();
        api.closeStreams();
        const drained = new Promise<void>((done) => server.close(() => done()));
        const tlsDrained = tls?.close();
        server.closeIdleConnections();
        forwarder.drain();
        const timer = setTimeout(() => {
          server.closeAllConnections();
          tls?.force();
          forwarder.close();
        }, DRAIN_TIMEOUT_MS);
        await drained;
        await tlsDrained;
        clearTimeout(timer);
        tls?.force();
        await customDomains.close();
        await acme?.close();
        certificates.close();
        forwarder.close();
        await appProxy.close();
        await platform.close();
        await stopTracing();
        log.info('stopped');
      })();
      return closing;
    },
  };
}

/** A Host header's name: lower case, without its port or a final dot. */
function hostnameOf(host: string): string {
  return host.trim().toLowerCase().replace(/:\d{1,5}$/, '').replace(/\.$/, '');
}

/** The sandbox status without what describes the host (the reason a driver was chosen names paths and devices). */
function withoutHostDetails<Status extends { reason?: string }>(sandbox: Status): Omit<Status, 'reason'> {
  const { reason: _reason, ...rest } = sandbox;
  return rest;
}

/** The host an advertised URL names (brackets of an IPv6 address taken off). */
function hostOf(url: string): string {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return '';
  }
}
