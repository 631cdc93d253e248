/**
 * PostgreSQL as an app (issue "Templates and stateful services"), the same suite on either
 * sandbox driver: an image built the way the official one is (postgresImage: initdb into the
 * volume as the postgres user on first start, then `exec postgres`) runs with a volume at
 * /var/lib/postgresql/data and its port on the edge, and the rows a client committed are there
 * after a redeploy, a restart of Alto, a suspend with no connection open (woken by the next one),
 * a suspend under a connection kept open (woken by its next query), and a SIGKILL of every
 * process of the sandbox (the process driver: every process in its control groups; the microVM
 * driver: its QEMU, checked by start time to be the one Alto started). One Alto and one image
 * serve every test; each test has its own app. `skip` names tests a driver leaves out.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { POSTGRES_PORT, postgresImage } from './app-images.js';
import { eventually, privateSandboxCache } from './apps-fixture.js';
import { startProcess, temporaryDataDir, type ServerProcess } from './harness.js';
import { startRegistry, type TestRegistry } from './images-fixture.js';
import { slotsOf } from './serverless-fixture.js';

const PASSWORD = 'correct horse battery staple';
const ENV = { POSTGRES_PASSWORD: PASSWORD, POSTGRES_USER: 'shop', POSTGRES_DB: 'orders' };

export type PostgresTest = 'first' | 'redeploy' | 'restart' | 'sleepy' | 'pooled' | 'killed' | 'snapshot';

/** `env`: more settings for the suite's Alto (ALTO_SNAPSHOT_AFTER_MS for the snapshot test). */
export function postgresAppSuite(driver: 'process' | 'microvm', skip: PostgresTest[] = [], env: Record<string, string> = {}): void {
  describe(`PostgreSQL as an app (${driver} sandbox)`, () => {
    let registry: TestRegistry;
    let alto: ServerProcess;
    let image: string;
    let key: string;
    const cache = privateSandboxCache();
    const dataDir = temporaryDataDir();
    const altoOptions = () => ({ dataDir, args: ['--sandbox', driver], env: { ALTO_SANDBOX_CACHE: cache.dir, ...env } });

    before(async () => {
      registry = await startRegistry();
      await registry.push('db/postgres', '15', await postgresImage());
      image = `${registry.host}/db/postgres:15`;
      alto = await startProcess(altoOptions());
      key = await alto.projectKey('pgapps', ['app']);
    });

    after(async () => {
      await alto?.close();
      await registry?.stop();
      cache.remove();
      rmSync(dataDir, { recursive: true, force: true });
    });

    const call = async (endpoint: string, body: unknown) => {
      const result = await alto.call('app', endpoint, body, key);
      assert.equal(result.status, 200, `${endpoint}: ${JSON.stringify(result.body)}`);
      return result.body;
    };
    const logs = async (name: string) =>
      ((await call('Logs', { name })).lines as { line: string }[]).map((entry) => entry.line).join('\n');

    /** Runs the app (min_instances 1 unless `settings` say) and answers its edge port. */
    async function runPostgres(name: string, settings: Record<string, unknown> = {}): Promise<number> {
      const run = await alto.call('app', 'Run', { name, image, memory: 256, tcp: POSTGRES_PORT, min_instances: 1, volumes: [{ name: 'data', path: '/var/lib/postgresql/data' }], env_vars: ENV, ...settings }, key);
      assert.equal(run.status, 200, JSON.stringify(run.body));
      return run.body.service.tcp_port as number;
    }

    /** A client connected to the app through its edge port as `user` with `password`. */
    async function connect(port: number, password = PASSWORD): Promise<pg.Client> {
      const client = new pg.Client({ host: '127.0.0.1', port, user: ENV.POSTGRES_USER, password, database: ENV.POSTGRES_DB, connectionTimeoutMillis: 20_000 });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    }

    /** Connects once the server accepts connections (after a start or restart), or fails with the app's log. */
    async function connectWhenUp(name: string, port: number): Promise<pg.Client> {
      try {
        return await eventually(() => connect(port), `${name} accepting connections`, 60_000);
      } catch (error) {
        throw new Error(`${(error as Error).message}\n${await logs(name)}`);
      }
    }

    async function rows(client: pg.Client): Promise<string[]> {
      return (await client.query<{ item: string }>('SELECT item FROM orders ORDER BY id')).rows.map((row) => row.item);
    }

    test(`first start: initdb into the volume as postgres; a password login creates a table and commits rows`, { skip: skip.includes('first') && `run elsewhere: by another file of this suite, or on the process sandbox` }, async () => {
      const port = await runPostgres('first');
      const client = await connectWhenUp('first', port);
      try {
        await client.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)');
        await client.query("INSERT INTO orders (item) VALUES ('apples'), ('pears')");
        assert.deepEqual(await rows(client), ['apples', 'pears']);
        const who = await client.query<{ user: string; db: string }>('SELECT current_user AS user, current_database() AS db');
        assert.deepEqual(who.rows[0], { user: 'shop', db: 'orders' });
      } finally {
        await client.end();
      }
      const said = await logs('first');
      assert.match(said, /PostgreSQL init process complete/);
      await assert.rejects(connect(port, 'wrong'), /password authentication failed/);
      await call('Delete', { name: 'first' });
    });

    test(`a redeploy (app/Update) stops the server cleanly on SIGINT; the new instance finds the rows`, { skip: skip.includes('redeploy') && `run elsewhere: by another file of this suite, or on the process sandbox` }, async () => {
      const port = await runPostgres('redeploy');
      await commitRows(await connectWhenUp('redeploy', port), ['apples', 'pears']);
      const first = await runningInstance('redeploy');
      await call('Update', { name: 'redeploy', env_vars: { ...ENV, ROUND: '2' } });
      const second = await eventually(async () => {
        const instance = await runningInstance('redeploy');
        return instance !== first && instance;
      }, 'the new instance of redeploy running');
      const client = await connectWhenUp('redeploy', port);
      try {
        assert.deepEqual(await rows(client), ['apples', 'pears']);
      } finally {
        await client.end();
      }
      assert.notEqual(second, first);
      const said = await logs('redeploy');
      // The image's STOPSIGNAL: a fast shutdown, not a kill after the grace period.
      assert.match(said, /received fast shutdown request/);
      assert.match(said, /database system is shut down/);
      assert.equal(said.match(/PostgreSQL init process complete/g)?.length, 1, 'initdb ran once: the second start found the data');
      await call('Delete', { name: 'redeploy' });
    });

    test(`a restart of Alto: the app comes back on the same volume with its rows`, { skip: skip.includes('restart') && `run elsewhere: by another file of this suite, or on the process sandbox` }, async () => {
      const port = await runPostgres('restart');
      await commitRows(await connectWhenUp('restart', port), ['apples', 'pears']);
      assert.equal(await alto.stop('SIGTERM'), 0);
      alto = await startProcess(altoOptions());
      const again = (await call('Get', { name: 'restart' })).service.tcp_port as number;
      const client = await connectWhenUp('restart', again);
      try {
        assert.deepEqual(await rows(client), ['apples', 'pears']);
      } finally {
        await client.end();
      }
      await call('Delete', { name: 'restart' });
    });

    test(`suspended with no connection open (min_instances 0), woken by the next connection: the rows are there`, { skip: skip.includes('sleepy') && `run elsewhere: by another file of this suite, or on the process sandbox` }, async () => {
      const port = await runPostgres('sleepy', { min_instances: 0, idle_timeout: 1 });
      const instance = await whenSuspended('sleepy');
      const writer = await connectWhenUp('sleepy', port);
      const during = (await slotsOf(alto, key, 'sleepy'))[0];
      assert.deepEqual([during.state, during.frozen, during.in_flight], ['running', false, 1], 'the open connection holds it running');
      await commitRows(writer, ['apples', 'pears']);
      // Asleep again once the connection closed (the same instance, frozen), woken by the next one.
      await whenSuspended('sleepy', instance);
      const reader = await connect(port);
      try {
        assert.deepEqual(await rows(reader), ['apples', 'pears']);
      } finally {
        await reader.end();
      }
      assert.equal((await slotsOf(alto, key, 'sleepy'))[0].instance, instance, 'the same instance, resumed');
      await call('Delete', { name: 'sleepy' });
    });

    test(`a connection kept open across a suspend: quiet, it lets the instance suspend; its next query wakes the same instance and is answered`, { skip: skip.includes('pooled') && `run elsewhere: by another file of this suite, or on the process sandbox` }, async () => {
      const port = await runPostgres('pooled', { min_instances: 0, idle_timeout: 1 });
      const client = await connectWhenUp('pooled', port);
      try {
        await client.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)');
        await client.query('INSERT INTO orders (item) VALUES ($1)', ['apples']);
        // The connection stays open and quiet: the instance suspends under it.
        const instance = await whenSuspended('pooled');
        const asleep = (await slotsOf(alto, key, 'pooled'))[0];
        assert.equal(asleep.in_flight, 0, 'a quiet connection is not counted as an exchange');
        // The same connection, its session intact, wakes it.
        await client.query('INSERT INTO orders (item) VALUES ($1)', ['pears']);
        assert.deepEqual(await rows(client), ['apples', 'pears']);
        const awake = (await slotsOf(alto, key, 'pooled'))[0];
        assert.deepEqual([awake.instance, awake.state, awake.in_flight], [instance, 'running', 1], 'the same instance, resumed, counting the connection again');
        // And it suspends again while the connection idles, with no snapshot taken under it.
        await whenSuspended('pooled', instance);
        assert.deepEqual(await rows(client), ['apples', 'pears']);
      } finally {
        await client.end();
      }
      await call('Delete', { name: 'pooled' });
    });

    test(
      `snapshotted to disk once suspended with no connection open (its memory freed), restored by the next connection with the volume as it left it`,
      { skip: skip.includes('snapshot') ? `run elsewhere: by another file of this suite` : driver !== 'microvm' && 'the process sandbox takes no snapshots' },
      async () => {
        const port = await runPostgres('frozen', { min_instances: 0, idle_timeout: 1 });
        await commitRows(await connectWhenUp('frozen', port), ['apples', 'pears']);
        const asleep = await eventually(async () => {
          const slot = (await slotsOf(alto, key, 'frozen'))[0];
          return slot?.state === 'snapshotted' && slot;
        }, 'frozen snapshotted to disk', 120_000);
        assert.equal(asleep.instance, '', 'no instance runs while it is snapshotted');
        const client = await connectWhenUp('frozen', port);
        try {
          assert.deepEqual(await rows(client), ['apples', 'pears']);
          await client.query('INSERT INTO orders (item) VALUES ($1)', ['plums']);
          assert.deepEqual(await rows(client), ['apples', 'pears', 'plums']);
        } finally {
          await client.end();
        }
        const awake = (await slotsOf(alto, key, 'frozen'))[0] as { origin?: string };
        assert.equal(awake.origin, 'snapshot', 'restored from its own snapshot, not booted');
        assert.doesNotMatch(await logs('frozen'), /cannot be restored, booting instead/);
        await call('Delete', { name: 'frozen' });
      },
    );

    test(`SIGKILL of every process of the sandbox loses no committed row: the next instance recovers them`, { skip: skip.includes('killed') && `run elsewhere: by another file of this suite, or on the process sandbox` }, async () => {
      const port = await runPostgres('killed');
      await commitRows(await connectWhenUp('killed', port), ['apples', 'pears']);
      const victim = await runningInstance('killed');
      // A killed QEMU is a power cut for the guest: what the image's entrypoint appended to its
      // config without fsync must have reached the disk first (the guest writes back within
      // about a second). Committed rows are the server's own fsyncs and need no wait.
      if (driver === 'microvm') await diskSettled('killed');
      const pids = sandboxProcesses(victim);
      assert.ok(pids.length >= (driver === 'process' ? 3 : 1), `the sandbox's processes (unshare, the supervisor, postgres and its workers; or QEMU): ${pids}`);
      // Killing the first of them ends others with it (parent-death signals): one gone by its turn is not an error.
      let killed = 0;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
          killed += 1;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
        }
      }
      assert.ok(killed > 0, 'at least one process of the sandbox was killed');
      await eventually(async () => {
        const instance = await runningInstance('killed');
        return instance !== victim && instance;
      }, 'a new instance of killed running', 120_000).catch(async (error: Error) => {
        throw new Error(`${error.message}\n${await logs('killed')}`);
      });
      const ended = ((await call('Get', { name: 'killed' })).service.instances as InstanceView[]).find((entry) => entry.id === victim);
      // Killed from outside, not stopped: the sandbox crashed, or its supervisor saw postgres die first.
      assert.ok(ended?.ended && ended.exit_reason !== 'stopped', JSON.stringify(ended));
      const client = await connectWhenUp('killed', port);
      try {
        assert.deepEqual(await rows(client), ['apples', 'pears']);
      } finally {
        await client.end();
      }
      assert.match(await logs('killed'), /database system was interrupted|was not properly shut down/, 'it recovered from its write-ahead log');
      await call('Delete', { name: 'killed' });
    });

    interface InstanceView {
      id: string;
      state: string;
      ended?: string;
      exit_reason?: string;
    }

    async function runningInstance(name: string): Promise<string | undefined> {
      const instances = (await call('Get', { name })).service.instances as InstanceView[];
      return instances.find((instance) => instance.state === 'running' && !instance.ended)?.id;
    }

    async function whenSuspended(name: string, instance?: string): Promise<string> {
      return eventually(async () => {
        const slot = (await slotsOf(alto, key, name))[0];
        return slot?.state === 'suspended' && slot.frozen === true && (!instance || slot.instance === instance) && slot.instance;
      }, `${name} suspended and frozen`, 60_000);
    }

    /** Creates the orders table, commits one row per item in its own transaction, and closes the client. */
    async function commitRows(client: pg.Client, items: string[]): Promise<void> {
      try {
        await client.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)');
        for (const item of items) await client.query('INSERT INTO orders (item) VALUES ($1)', [item]);
      } finally {
        await client.end();
      }
    }

    /** Waits until the volume's disk of app `name` (microvm) has not changed for 2 s: its guest has written back what it held. */
    async function diskSettled(name: string): Promise<void> {
      const disk = (readdirSync(dataDir, { recursive: true }) as string[]).find((path) => path.endsWith(join(name, 'data', 'volume.ext4')));
      assert.ok(disk, `the volume disk of ${name}`);
      let seen = '';
      let since = Date.now();
      await eventually(async () => {
        const { mtimeMs, size } = statSync(join(dataDir, disk));
        if (`${mtimeMs}:${size}` !== seen) {
          seen = `${mtimeMs}:${size}`;
          since = Date.now();
        }
        return Date.now() - since >= 2_000;
      }, `the volume disk of ${name} to settle`, 60_000);
    }

    /**
     * The host pids of the instance's processes, as its record names them: every process in its
     * control groups (process driver) and its own processes outside them (QEMU), each only while
     * its start time is the recorded one (so a pid reused since is never named).
     */
    function sandboxProcesses(instance: string): number[] {
      const record = (readdirSync(dataDir, { recursive: true }) as string[]).find((path) => path.endsWith(`${instance}.instance.json`));
      assert.ok(record, `the record of instance ${instance}`);
      const { cgroups, processes } = JSON.parse(readFileSync(join(dataDir, record), 'utf8')) as { cgroups: string[]; processes: { pid: number; startTime: string }[] };
      const pids = new Set<number>();
      for (const dir of cgroups) {
        for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) pids.add(Number(pid));
      }
      for (const { pid, startTime } of processes) if (startTimeOf(pid) === startTime) pids.add(pid);
      return [...pids];
    }
  });
}

/** Field 22 of /proc/<pid>/stat (clock ticks from boot to the process's start), or undefined when there is no such process. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
