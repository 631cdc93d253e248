/**
 * @module compute/cluster/membership
 * This process as a node of the cloud its store names: `startNodeMembership` joins under a name
 * (`--node`, default the host name) and an advertised URL (`--advertise`, default the edge's own
 * URL), then heartbeats the node's lease every HEARTBEAT_INTERVAL_MS with the machine's capacity
 * (memory, CPUs) and the apps' (sandbox driver, instances by state). Other nodes count it lost
 * when no heartbeat came for LEASE_MS. `stop()` ends the heartbeats and marks the node gone, so a
 * clean shutdown is seen at once rather than after the lease. The node's id is its data folder's
 * `node-id` (kit/node-id.ts): the same across restarts, so a restarted node rejoins as itself.
 * Joining under a `--node` name is refused (AltoError 409) when a live node of another id holds
 * it. Without `--node`, a node whose host name a live node of another data folder holds (several
 * nodes on one machine) takes `<host name>-<node id>` instead.
 */
import { availableParallelism, freemem, hostname, totalmem } from 'node:os';
import { isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import { loadNodeId } from '../../kit/node-id.js';
import type { Platform } from '../../platform/platform.js';
import type { NodeCapacity, NodeHeartbeat } from '../../store/nodes/port.js';
import { appsComponent } from '../apps/service.js';

/** How often a node renews its lease. */
export const HEARTBEAT_INTERVAL_MS = 2_000;
/** How long a lease lasts from its last renewal: a node silent this long is lost. */
export const LEASE_MS = 10_000;

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_URL_LENGTH = 2_048;
const MIB = 1024 * 1024;

export interface MembershipOptions {
  platform: Platform;
  /** `--node` (ALTO_NODE): the name operators use; default the host name (see `defaultNodeNames`). */
  name?: string;
  /** `--advertise` (ALTO_ADVERTISE): the URL other nodes reach this one at. */
  advertiseUrl: string;
  log?: Logger;
  /** For tests: a faster heartbeat and a shorter lease than the defaults. */
  heartbeatIntervalMs?: number;
  leaseMs?: number;
}

export interface NodeMembership {
  /** The data folder's node id. */
  readonly id: string;
  readonly name: string;
  readonly advertiseUrl: string;
  /**
   * Whether this node may serve its apps now: its lease runs, and, if it once lapsed (a pause, a
   * cut from the store), the apps were reconciled with the store since (`reconciled`): other
   * nodes may have taken them meanwhile, and an app must never be answered by two nodes.
   */
  fenced(now?: number): boolean;
  /** A reconcile of this node's apps with the store that began at `startedAt` completed. */
  reconciled(startedAt: number): void;
  /** Ends the heartbeats and marks the node gone (its lease ends now). Safe to call twice. */
  stop(): Promise<void>;
}

/** The membership started for each platform: one per process, however many callers start it. */
const started = new WeakMap<Platform, Promise<NodeMembership>>();

/**
 * Joins the cloud and keeps heartbeating until `stop()`. Resolves once the first heartbeat is
 * recorded; rejects (409) when the name is held by another live node, or (400) when the name
 * or URL is not one. Called again for the same platform, it answers the membership it started.
 */
export function startNodeMembership(options: MembershipOptions): Promise<NodeMembership> {
  const existing = started.get(options.platform);
  if (existing) return existing;
  const joining = join(options);
  started.set(options.platform, joining);
  joining.catch(() => started.delete(options.platform));
  return joining;
}

/** A node name given with `--node`, trimmed; throws a sentence for anything that is not one. */
export function nodeNameOf(given: string): string {
  const name = given.trim();
  if (!NODE_NAME.test(name)) {
    throw new Error(`--node (ALTO_NODE) "${given.slice(0, 80)}" is not a node name: 1 to 64 letters, digits, ".", "_" or "-", not starting with "." "_" or "-"`);
  }
  return name;
}

/**
 * The names a node started without `--node` tries, in order: the host name (its first label),
 * then the host name with the node id, unique to the data folder, for a second node on one
 * machine; `node-<id>` when the host name is not a node name.
 */
export function defaultNodeNames(id: string, host = hostname()): string[] {
  const label = host.split('.')[0];
  if (!NODE_NAME.test(label)) return [`node-${id}`.slice(0, 64)];
  return [label, `${label}-${id}`.slice(0, 64)];
}

/** `--advertise`: an http(s) URL with a host and nothing after the origin but a path. */
export function advertiseUrlOf(value: string): string {
  let parsed: URL;
  try {
    if (value.length > MAX_URL_LENGTH) throw new Error('too long');
    parsed = new URL(value);
  } catch {
    throw new Error(`--advertise (ALTO_ADVERTISE) must be the http:// or https:// URL other nodes reach this one at, e.g. http://10.0.0.5:4000, not "${value.slice(0, 80)}"`);
  }
  if (!['http:', 'https:'].includes(parsed.protocol) || !parsed.hostname || parsed.username || parsed.password || parsed.search || parsed.hash) {
    throw new Error(`--advertise (ALTO_ADVERTISE) must be an http:// or https:// URL with a host and no credentials, query or fragment, e.g. http://10.0.0.5:4000, not "${value.slice(0, 80)}"`);
  }
  return parsed.toString().replace(/\/$/, '');
}

/** What this machine and its apps have now. */
export function readCapacity(platform: Platform): NodeCapacity {
  const capacity: NodeCapacity = {
    memoryTotalMiB: Math.floor(totalmem() / MIB),
    memoryFreeMiB: Math.floor(freemem() / MIB),
    cpus: availableParallelism(),
    driver: platform.config.sandbox ?? 'auto',
    accelerator: 'unknown',
    instances: {},
  };
  let apps;
  try {
    apps = platform.use(appsComponent);
  } catch {
    return capacity; // a platform without apps (tests of the blocks alone)
  }
  const sandbox = apps.sandboxStatus();
  if (sandbox.probed && sandbox.driver) {
    capacity.driver = sandbox.driver;
    capacity.accelerator = sandbox.accelerator ?? 'none';
  }
  for (const [state, count] of Object.entries(apps.instanceStates())) if (count) capacity.instances[state] = count;
  const sandboxes = apps.sandboxCapacity();
  capacity.sandboxes = sandboxes.sandboxes;
  capacity.maxInstances = sandboxes.maxInstances;
  return capacity;
}

async function join(options: MembershipOptions): Promise<NodeMembership> {
  const { platform } = options;
  const store = platform.stores.nodes;
  const log = options.log ?? platform.log.child({ component: 'cluster' });
  const intervalMs = options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS;
  const leaseMs = options.leaseMs ?? LEASE_MS;
  const id = loadNodeId(platform.config.dataDir);
  const candidates = options.name?.trim() ? [nodeNameOf(options.name)] : defaultNodeNames(id);
  const advertiseUrl = advertiseUrlOf(options.advertiseUrl);
  let name = candidates[0];
  const heartbeat = (): NodeHeartbeat => ({ id, name, advertiseUrl, version: platform.config.version, startedAt: platform.startedAt, capacity: readCapacity(platform) });

  for (const [index, candidate] of candidates.entries()) {
    name = candidate;
    try {
      await store.heartbeat(heartbeat(), Date.now(), leaseMs);
      break;
    } catch (error) {
      // Only a default name gives way to the next one; a name asked for is refused as it is.
      if (!(isAltoError(error) && error.code === 'conflict') || index === candidates.length - 1) throw error;
    }
  }
  log.info({ node: name, node_id: id, advertise: advertiseUrl, store: store.backend }, `joined the cloud as node "${name}"`);

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let beating: Promise<void> = Promise.resolve();
  let failingSince: number | undefined;
  // The lease as this node knows it holds it: from when a recorded heartbeat was sent.
  let leaseUntil = Date.now() + leaseMs;
  // When a heartbeat found the lease had lapsed before it: fenced until a reconcile begun after.
  let lapsedAt: number | undefined;
  const beat = async () => {
    try {
      const sentAt = Date.now();
      await store.heartbeat(heartbeat(), sentAt, leaseMs);
      if (sentAt >= leaseUntil) {
        lapsedAt = Date.now();
        log.warn({ node: name, lapsed_for_ms: sentAt - leaseUntil }, "this node's lease had lapsed: its apps are checked against the store before it serves them again");
      }
      leaseUntil = sentAt + leaseMs;
      if (failingSince !== undefined) log.info({ node: name, failed_for_ms: Date.now() - failingSince }, 'heartbeats recorded again');
      failingSince = undefined;
    } catch (error) {
      // Logged when heartbeats start failing, not on every one; the lease lapses meanwhile.
      if (failingSince === undefined) {
        failingSince = Date.now();
        log.error({ err: error, node: name }, `this node's heartbeat failed; other nodes count it lost ${leaseMs / 1000} s after the last one recorded`);
      }
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      beating = beat().finally(schedule);
    }, intervalMs);
    // Heartbeats alone do not keep the process running.
    timer.unref();
  };
  schedule();

  let stopping: Promise<void> | undefined;
  return {
    id,
    name,
    advertiseUrl,
    fenced(now = Date.now()) {
      return now >= leaseUntil || lapsedAt !== undefined;
    },
    reconciled(startedAt) {
      if (lapsedAt !== undefined && startedAt >= lapsedAt) lapsedAt = undefined;
    },
    stop() {
      stopping ??= (async () => {
        stopped = true;
        clearTimeout(timer);
        await beating;
        started.delete(platform);
        try {
          await store.leave(id, Date.now());
          log.info({ node: name }, 'left the cloud');
        } catch (error) {
          log.warn({ err: error, node: name }, `could not mark this node gone; others count it lost ${leaseMs / 1000} s after its last heartbeat`);
        }
      })();
      return stopping;
    },
  };
}
