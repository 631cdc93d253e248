/**
 * @module blocks/cron/schema
 * The wire schema of the `cron` block, compatible with M3O's `cron` service. Extensions: Jobs
 * shows each job's next run and its last runs; Schedule also returns the signing secret that
 * callbacks are signed with; `SigningSecret` returns it alone.
 */
import { z } from 'zod';

export const Job = z
  .object({
    id: z.string().describe('job id'),
    name: z.string().describe('name'),
    description: z.string().describe('description'),
    interval: z.string().describe('scheduled interval (cron expression, UTC)'),
    callback: z.string().describe('callback url'),
  })
  .meta({ id: 'CronJob' });

export const Run = z
  .object({
    scheduled: z.string().describe('when the run was due, RFC 3339'),
    finished: z.string().describe('when the last attempt ended, RFC 3339'),
    status: z.enum(['succeeded', 'failed', 'refused']).describe('succeeded: a 2xx answer; failed: every attempt failed; refused: private address'),
    code: z.number().int().describe('HTTP status of the last attempt; 0 when there was none'),
    attempts: z.number().int(),
    error: z.string().describe('why the last attempt failed, if it did'),
  })
  .meta({ id: 'CronRun' });

export const JobWithRuns = Job.extend({
  next: z.string().describe('next run time, RFC 3339; empty when the expression never fires again'),
  runs: z.array(Run).describe('the last 20 runs, newest first'),
}).meta({ id: 'CronJobWithRuns' });

/** A text field capped before anything parses it (no expression, URL or name needs more). */
const Capped = (max: number) => z.string().max(max, { error: `at most ${max} characters` });

export const ScheduleRequest = z.object({
  id: Capped(128).optional().describe('unique id of job; an existing id replaces that job; a random one when empty'),
  name: Capped(256).optional().describe('name of cron (required)'),
  description: Capped(1024).optional().describe('description'),
  interval: Capped(256)
    .optional()
    .describe('cron expression in UTC: "minute hour day-of-month month day-of-week", e.g. "*/5 * * * *"; a 6th leading field gives seconds'),
  callback: Capped(2048).optional().describe('callback url: POSTed a signed JSON body each time the job fires (required); app://<app>/<path> calls one of the project\'s own apps'),
});
export const ScheduleResponse = z.object({
  job: Job,
  signingSecret: z.string().describe('the secret callbacks are signed with (Alto-Signature header)'),
});

export const DeleteRequest = z.object({ id: z.string().optional().describe('id of the cron job') });
export const DeleteResponse = z.object({});

export const JobsRequest = z.object({});
export const JobsResponse = z.object({ jobs: z.array(JobWithRuns) });

export const SigningSecretRequest = z.object({});
export const SigningSecretResponse = z.object({
  signingSecret: z.string().describe('HMAC-SHA256 key of the Alto-Signature header: t=<unix seconds>,v1=<hex of HMAC("<t>.<body>")>'),
});
