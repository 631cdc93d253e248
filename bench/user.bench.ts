/**
 * user and email benchmark: Alto in this process over HTTP on loopback, `concurrency` calls in
 * flight. user/Create and user/Login are bound by argon2id (by design: each costs one hash);
 * user/ReadSession is a lookup; email/Send to the outbox only, then over SMTP to a loopback
 * smtp-server. Prints calls per second and p50/p99 latency.
 *
 * Run: node --import tsx bench/user.bench.ts [accounts=200] [concurrency=8]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAlto } from '../packages/alto/src/edge/server.js';
import { silentLogger } from '../packages/alto/src/kit/logger.js';
import { startSmtpServer } from '../packages/alto/test/smtp-server.js';

const accounts = Number(process.argv[2] ?? 200);
const concurrency = Number(process.argv[3] ?? 8);

interface Figures {
  perSecond: number;
  p50ms: number;
  p99ms: number;
}

async function measure(total: number, task: (i: number) => Promise<unknown>): Promise<Figures> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const begun = performance.now();
        await task(i);
        latencies.push(performance.now() - begun);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (quantile: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(quantile * latencies.length))] * 100) / 100;
  return { perSecond: Math.round(total / seconds), p50ms: at(0.5), p99ms: at(0.99) };
}

const smtp = await startSmtpServer();
const dataDir = mkdtempSync(join(tmpdir(), 'alto-bench-'));
const alto = await startAlto({ port: 0, host: '127.0.0.1', dataDir, logger: silentLogger() });
try {
  const adminKey = readFileSync(alto.adminKeyPath, 'utf8').trim();
  const call = async (service: string, endpoint: string, body: unknown, key = adminKey) => {
    const response = await fetch(`${alto.url}/v1/${service}/${endpoint}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
    if (response.status !== 200) throw new Error(`${service}/${endpoint}: ${response.status} ${await response.text()}`);
    return response.json() as Promise<any>;
  };
  await call('projects', 'Create', { name: 'bench' });
  const key = (await call('keys', 'Generate', { project: 'bench', scopes: ['*'] })).key as string;
  const sessions: string[] = [];
  const rows: Record<string, string | number>[] = [];
  const row = (what: string, count: number, figures: Figures) => rows.push({ what, calls: count, ...figures });

  row('user/Create', accounts, await measure(accounts, (i) => call('user', 'Create', { email: `u${i}@example.com`, password: 'bench-password' }, key)));
  row(
    'user/Login',
    accounts,
    await measure(accounts, async (i) => {
      const { session } = await call('user', 'Login', { email: `u${i}@example.com`, password: 'bench-password' }, key);
      sessions.push(session.id);
    }),
  );
  const reads = accounts * 20;
  row('user/ReadSession', reads, await measure(reads, (i) => call('user', 'ReadSession', { session_id: sessions[i % sessions.length] }, key)));
  const mails = accounts * 5;
  row(
    'email/Send (outbox only)',
    mails,
    await measure(mails, (i) => call('email', 'Send', { to: `u${i % accounts}@example.com`, subject: 'bench', text_body: 'hello' }, key)),
  );
  await call('email', 'SetSmtp', { url: smtp.url }, key);
  row(
    'email/Send (SMTP, loopback)',
    accounts,
    await measure(accounts, (i) => call('email', 'Send', { to: `u${i}@example.com`, subject: 'bench', text_body: 'hello' }, key)),
  );
  console.log(`user and email over HTTP, ${concurrency} in flight, embedded SQLite:`);
  console.table(rows);
} finally {
  await alto.close();
  await smtp.close();
  rmSync(dataDir, { recursive: true, force: true });
}
