/**
 * Test harness: start a real Alto, in this process or as its own process, on a fresh data
 * folder and a free port, and call it over HTTP like a user would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAlto, type RunningAlto } from '../src/edge/server.js';
import { silentLogger } from '../src/kit/logger.js';

export const ALTO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI_ENTRY = join(ALTO_ROOT, 'src/cli/run.ts');
/** The command as users run it: the sources compiled by `npm run build` (benches measure this, not tsx's transform). */
export const BUILT_CLI_ENTRY = join(ALTO_ROOT, 'bin/alto.js');

export interface CallResult<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface TestAlto {
  url: string;
  dataDir: string;
  adminKey: string;
  /** POST /v1/{service}/{endpoint} with a JSON body, using `key` (default: the admin key). */
  call<T = any>(service: string, endpoint: string, body?: unknown, key?: string | null): Promise<CallResult<T>>;
  /** Creates a project and a key scoped to `scopes` in it; returns the key. */
  projectKey(project: string, scopes?: string[]): Promise<string>;
  close(): Promise<void>;
}

/** Waits until `condition()` holds, checking on every turn of the event loop, or fails. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Waits until the async `condition()` holds, checking every 20 ms, or fails. */
export async function waitForAsync(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function temporaryDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'alto-test-'));
}

function caller(url: string, adminKey: string): TestAlto['call'] {
  return async (service, endpoint, body = {}, key = adminKey) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (key) headers.authorization = `Bearer ${key}`;
    const response = await fetch(`${url}/v1/${service}/${endpoint}`, {
      method: 'POST',
      headers,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined, headers: response.headers };
  };
}

function projectKeyMaker(call: TestAlto['call']): TestAlto['projectKey'] {
  return async (project, scopes = ['*']) => {
    const created = await call('projects', 'Create', { name: project });
    if (created.status !== 200 && created.status !== 409) throw new Error(`projects/Create: ${JSON.stringify(created.body)}`);
    const generated = await call('keys', 'Generate', { project, scopes });
    if (generated.status !== 200) throw new Error(`keys/Generate: ${JSON.stringify(generated.body)}`);
    return generated.body.key as string;
  };
}

export interface InProcessOptions {
  dataDir?: string;
  openSignup?: boolean;
  maxBodyBytes?: number;
  /** `--store postgres://...`: blocks use their PostgreSQL adapters. */
  postgresUrl?: string;
  /** `--events nats://...`: events and mq on NATS JetStream. */
  natsUrl?: string;
  /** `--objects s3://...`: space objects in an S3-compatible bucket. */
  objects?: string;
  /** How long a websocket stream waits for a client that reads nothing (default 30 s). */
  streamStallTimeoutMs?: number;
  /** `--smtp smtp://...`: the instance's mail server. */
  smtpUrl?: string;
}

/** Starts Alto inside the test process (fast; for API-level tests). */
export async function startInProcess(options: InProcessOptions = {}): Promise<TestAlto & { alto: RunningAlto }> {
  const dataDir = options.dataDir ?? temporaryDataDir();
  const alto = await startAlto({
    port: 0,
    host: '127.0.0.1',
    dataDir,
    openSignup: options.openSignup,
    maxBodyBytes: options.maxBodyBytes,
    postgresUrl: options.postgresUrl,
    natsUrl: options.natsUrl,
    objectsUrl: options.objects,
    streamStallTimeoutMs: options.streamStallTimeoutMs,
    smtpUrl: options.smtpUrl,
    logger: silentLogger(),
  });
  const adminKey = readFileSync(alto.adminKeyPath, 'utf8').trim();
  const call = caller(alto.url, adminKey);
  return {
    alto,
    url: alto.url,
    dataDir,
    adminKey,
    call,
    projectKey: projectKeyMaker(call),
    async close() {
      await alto.close();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ServerProcess extends TestAlto {
  child: ChildProcess;
  /** The HTTPS port, when started with `--https-port`. */
  httpsPort?: number;
  /** Everything the server wrote to stdout (JSON log lines) and stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Sends a signal and resolves with the exit code (or signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export interface ProcessOptions {
  dataDir?: string;
  args?: string[];
  env?: Record<string, string>;
  /** The loopback address to listen on (default 127.0.0.1): nodes on one machine that each open the same TCP port need their own. */
  host?: string;
  /** Run the compiled build (`bin/alto.js`, after `npm run build`) instead of the sources through tsx. */
  built?: boolean;
}

/**
 * The `alto up` processes this test process started and that still run. A test file the runner
 * ends early (its time limit, a failed hook) would otherwise leave them running after it: each
 * is asked to stop (SIGTERM, as a user's Ctrl-C) when this process exits. Only our own children,
 * by the handle that started them, and only while they have not exited (so the PID is still theirs).
 */
const runningChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of runningChildren) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
});

/** Runs `alto up` as its own process (for start/stop, signals and crash tests). */
export async function startProcess(options: ProcessOptions = {}): Promise<ServerProcess> {
  const dataDir = options.dataDir ?? temporaryDataDir();
  const child = spawn(
    process.execPath,
    [...(options.built ? [BUILT_CLI_ENTRY] : ['--import', 'tsx', CLI_ENTRY]), 'up', '--port', '0', '--host', options.host ?? '127.0.0.1', '--data', dataDir, ...(options.args ?? [])],
    // The tests' registries listen on loopback, where project keys pull only from hosts the
    // operator trusts: every port of 127.0.0.1 is, unless a test says otherwise.
    { env: { ...process.env, ALTO_LOG_FORMAT: 'json', ALTO_TRUSTED_REGISTRIES: '127.0.0.1', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  runningChildren.add(child);
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => {
      runningChildren.delete(child);
      resolve(code ?? signal ?? -1);
    }),
  );
  let httpsPort: number | undefined;
  const url = await new Promise<string>((resolve, reject) => {
    // Only whole lines not looked at yet are parsed, and none once the server listens: a server
    // that logs much must not cost this process more per line as its output grows.
    let listening = false;
    let parsed = 0;
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (listening) return;
      const end = stdout.lastIndexOf('\n');
      if (end < parsed) return;
      const lines = stdout.slice(parsed, end).split('\n');
      parsed = end + 1;
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as { msg?: string; url?: string; port?: number; https_port?: number };
        if (entry.msg === 'listening' && entry.port) {
          listening = true;
          httpsPort = entry.https_port;
          resolve(`http://${options.host ?? '127.0.0.1'}:${entry.port}`);
        }
      }
    });
    void exited.then((code) => reject(new Error(`alto up exited (${code}) before listening:\n${stderr}\n${stdout}`)));
  });
  const adminKey = options.env?.ALTO_ADMIN_KEY ?? readFileSync(join(dataDir, 'admin-key'), 'utf8').trim();
  const stop = (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  const call = caller(url, adminKey);
  return {
    child,
    url,
    httpsPort,
    dataDir,
    adminKey,
    call,
    projectKey: projectKeyMaker(call),
    stdout: () => stdout,
    stderr: () => stderr,
    stop,
    async close() {
      await stop('SIGTERM');
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
