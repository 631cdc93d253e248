/**
 * @module blocks/cron
 * The `cron` block: M3O-compatible `Schedule`, `Jobs` and `Delete` of jobs that POST a signed
 * JSON body to a callback URL on a cron schedule (UTC), plus `SigningSecret`. Jobs live in the
 * cron port of `platform.stores` (SQLite embedded, PostgreSQL with `--store postgres://`), so
 * they survive restarts and are shared, and fired once, by every process on the same store.
 */
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import { errors } from '../../kit/errors.js';
import { privateCallbacksAllowed } from './addresses.js';
import { CronScheduler } from './scheduler.js';
import {
  DeleteRequest,
  DeleteResponse,
  JobsRequest,
  JobsResponse,
  ScheduleRequest,
  ScheduleResponse,
  SigningSecretRequest,
  SigningSecretResponse,
} from './schema.js';
import type { JobRecord } from '../../store/cron/port.js';
import { cronSection } from './transfer.js';

const scheduler = component('cron.scheduler', async (platform) => {
  const cron = new CronScheduler(platform.stores.cron, {
    allowPrivateCallbacks: privateCallbacksAllowed(),
    log: platform.log,
    apps: () => platform.appGateway,
    cipher: platform.masterKey().cipher,
  });
  await cron.signingSecrets.sealPlain();
  cron.start();
  return cron;
});

function namespaceOf(context: CallContext): string {
  return context.tenant.namespace;
}

function view(job: JobRecord) {
  return { id: job.id, name: job.name, description: job.description, interval: job.interval, callback: job.callback };
}

export const cronService = defineService({
  name: 'cron',
  description: 'Cron jobs: POST a signed request to your URL on a schedule (cron syntax, UTC).',
  priceMicros: 10,
  components: [scheduler],
  endpoints: {
    Schedule: endpoint({
      description:
        'Schedule a job (or replace the one with this id): the callback gets a signed JSON POST each time the cron interval (UTC) fires.',
      request: ScheduleRequest,
      response: ScheduleResponse,
      example: { name: 'nightly-report', interval: '0 3 * * *', callback: 'https://example.com/hooks/cron' },
      async handler(request, context) {
        const namespace = namespaceOf(context);
        const cron = context.platform.use(scheduler);
        const job = await cron.schedule(namespace, request);
        return { job: view(job), signingSecret: await cron.signingSecrets.get(namespace) };
      },
    }),
    Jobs: endpoint({
      description: "List this project's cron jobs, with each one's next run and its last 20 runs.",
      request: JobsRequest,
      response: JobsResponse,
      example: {},
      async handler(_request, context) {
        const namespace = namespaceOf(context);
        const store = context.platform.use(scheduler).store;
        const jobs = await store.list(namespace);
        return {
          jobs: await Promise.all(jobs.map(async (job) => ({
            ...view(job),
            next: job.nextRun === null ? '' : new Date(job.nextRun).toISOString(),
            runs: (await store.runs(namespace, job.id)).map((run) => ({
              scheduled: new Date(run.scheduledAt).toISOString(),
              finished: new Date(run.finishedAt).toISOString(),
              status: run.status,
              code: run.httpCode,
              attempts: run.attempts,
              error: run.error,
            })),
          }))),
        };
      },
    }),
    Delete: endpoint({
      description: 'Delete a cron job by id; it fires no more.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { id: 'nightly-report' },
      async handler(request, context) {
        await context.platform.use(scheduler).delete(namespaceOf(context), request.id ?? '');
        return {};
      },
    }),
    SigningSecret: endpoint({
      description:
        'The secret callbacks are signed with: verify Alto-Signature "t=<unix seconds>,v1=<hex>" as HMAC-SHA256 of "<t>.<body>".',
      request: SigningSecretRequest,
      response: SigningSecretResponse,
      example: {},
      async handler(_request, context) {
        return { signingSecret: await context.platform.use(scheduler).signingSecrets.get(namespaceOf(context)) };
      },
    }),
  },
  transfer: cronSection(scheduler),
  async deleteProjectData(projectId, platform) {
    await platform.use(scheduler).store.deleteProject(projectId);
  },
});
