/**
 * @module blocks/cron/transfer
 * The cron block's section of a project archive: per environment, the jobs (`cron/<env>/jobs.json`)
 * and the signing secret their callbacks verify (`cron/<env>/signing-secret`, sealed with the
 * export's passphrase like the secret block's values), so receivers keep verifying after the move.
 * Jobs keep their ids; their next run is computed again on the target; their past runs are not
 * carried. A job calling an app (`app://name/path`) is kept as it is: the app comes with the code.
 */
import { errors } from '../../kit/errors.js';
import type { Component } from '../../platform/service.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { JobRecord } from '../../store/cron/port.js';
import { checkCallbackUrl, isAppCallback, parseAppCallback, privateCallbacksAllowed } from './addresses.js';
import { nextFireTime, parseCron } from './expression.js';
import type { CronScheduler } from './scheduler.js';

const JOB_ID = /^[A-Za-z0-9._~-]{1,128}$/;

export function cronSection(scheduler: Component<CronScheduler>): ProjectSection {
  return {
    name: 'cron',
    kind: 'data',
    async export({ platform, environments, namespaceOf, archive, sealSecrets }) {
      const cron = platform.use(scheduler);
      for (const environment of environments) {
        const namespace = namespaceOf(environment);
        const jobs = await cron.store.list(namespace);
        if (jobs.length === 0) continue;
        await archive.json('cron', `${environment}/jobs.json`, jobs.map(({ id, name, description, interval, callback }) => ({ id, name, description, interval, callback })), jobs.length);
        await archive.buffer('cron', `${environment}/signing-secret`, sealSecrets(Buffer.from(await cron.signingSecrets.get(namespace))));
      }
    },
    async importEntry(context, entry) {
      const [environment, kind, ...rest] = entry.name.split('/');
      if (rest.length > 0) return context.warn(`cron: the entry ${entry.name} is not known to this Alto and was left out`);
      const namespace = context.namespaceOf(context.environmentOf(environment));
      const cron = context.platform.use(scheduler);
      if (kind === 'signing-secret') {
        const secret = context.openSecrets(await entry.buffer(), `the archive's cron signing secret (${entry.name})`).toString('utf8');
        if (!/^whsec_[0-9a-f]{64}$/.test(secret)) throw errors.badRequest('the cron signing secret is not one Alto makes');
        await cron.signingSecrets.adopt(namespace, secret);
      } else if (kind === 'jobs.json') {
        const now = Date.now();
        for (const job of await entry.json<JobRecord[]>()) {
          const id = String(job.id);
          if (!JOB_ID.test(id)) throw errors.badRequest(`the cron job id ${JSON.stringify(id).slice(0, 80)} is not valid`);
          const schedule = parseCron(String(job.interval));
          const callback = isAppCallback(String(job.callback)) ? appCallback(String(job.callback)) : await checkCallbackUrl(String(job.callback), privateCallbacksAllowed());
          const record: JobRecord = { namespace, id, name: String(job.name), description: String(job.description ?? ''), interval: schedule.source, callback, nextRun: nextFireTime(schedule, now) ?? null };
          await cron.store.save(record, now);
        }
      } else context.warn(`cron: the entry ${entry.name} is not known to this Alto and was left out`);
    },
  };
}

/** An app callback checked and written as the scheduler writes it. */
function appCallback(callback: string): string {
  const { name, path } = parseAppCallback(callback);
  return `app://${name}${path}`;
}
