/**
 * @module platform/services/projects
 * `projects/*`: create, list, update (limits), list the environments of, and delete the projects
 * of the caller's account.
 */
import { z } from 'zod';
import { errors } from '../../kit/errors.js';
import { defineService, endpoint } from '../service.js';
import type { ProjectRecord } from '../../store/control.js';
import { LIMIT_NAMES } from '../limit-names.js';
import type { Platform } from '../platform.js';
import { DEFAULT_ENVIRONMENT } from '../tenancy.js';
import { transferRoute } from '../transfer/route.js';
import { projectEnvironments } from '../transfer/transfer.js';
import { limitFieldsForCreate, limitFieldsForUpdate, pickLimits, ProjectLimits } from './limits-schema.js';

export const Project = z
  .object({
    id: z.string(),
    name: z.string(),
    created: z.string().describe('creation time, RFC 3339'),
    limits: ProjectLimits,
    request_log_days: z.number().int().describe("days its request log (logs/Read) keeps, within the node's cap; 0: no request log"),
    log_days: z.number().int().describe("days its apps' and functions' log lines (app/Logs) are kept"),
    log_bytes: z.number().int().describe("bytes its apps' and functions' logs hold together on a node; the oldest lines go first"),
  })
  .meta({ id: 'Project' });

export async function projectView(project: ProjectRecord, platform: Platform): Promise<z.infer<typeof Project>> {
  return {
    id: project.id,
    name: project.name,
    created: new Date(project.createdAt).toISOString(),
    limits: await platform.limits.projectLimits(project.id),
    request_log_days: (await platform.requestLog?.retentionDays(project.id)) ?? 0,
    ...(await platform.appLogs.boundsOf(project.id).then((bounds) => ({ log_days: bounds.days, log_bytes: bounds.bytes }))),
  };
}

const RequestLogDays = z
  .number()
  .int('request_log_days: must be a whole number')
  .min(0, 'request_log_days: must be 0 (no request log) or more')
  .max(36_500)
  .describe("days the project's request log keeps (0: none), at most the node's cap (ALTO_REQUEST_LOG_MAX_DAYS)");

/** Sets the project's request log retention (null: back to the node's default), within the node's cap. */
async function setRequestLogDays(platform: Platform, projectId: string, days: number | null): Promise<void> {
  const requestLog = platform.requestLog;
  if (!requestLog) throw errors.badRequest('request_log_days: this instance keeps no request log');
  if (days !== null && days > requestLog.maxDays) {
    throw errors.badRequest(`request_log_days: this instance keeps request logs at most ${requestLog.maxDays} days (ALTO_REQUEST_LOG_MAX_DAYS)`);
  }
  await requestLog.setRetentionDays(projectId, days);
}

const LogDays = z
  .number()
  .int('log_days: must be a whole number of days')
  .min(1, 'log_days: must be at least 1')
  .max(36_500)
  .describe("days the project's apps' log lines are kept, at most the node's ALTO_LOG_MAX_DAYS");
const LogBytes = z
  .number()
  .int('log_bytes: must be a whole number of bytes')
  .min(256 * 1024, 'log_bytes: must be at least 262144 (256 KiB)')
  .max(2 ** 50)
  .describe("bytes the project's apps' logs hold together on a node, the oldest lines going first; at most the node's ALTO_LOG_MAX_BYTES_PER_PROJECT");

const ProjectName = z.string().min(1).describe('project name: lower-case letters, digits and dashes');

export const projectsService = defineService({
  name: 'projects',
  description: 'Projects group keys and data: every key belongs to one project, and blocks keep each project apart.',
  priceMicros: 0,
  httpRoutes: [transferRoute()],
  endpoints: {
    Create: endpoint({
      description:
        'Create a project in your account, optionally with limits (rate_limit, monthly_quota, spend and storage caps); ' +
        "limits left out follow the instance's free tier.",
      access: 'manage',
      request: z.object({
        name: ProjectName,
        ...limitFieldsForCreate(LIMIT_NAMES),
        request_log_days: RequestLogDays.optional(),
        log_days: LogDays.optional(),
        log_bytes: LogBytes.optional(),
      }),
      response: z.object({ project: Project }),
      example: { name: 'shop', rate_limit: 50, monthly_quota: 100000 },
      async handler(request, context) {
        const tenant = context.tenant;
        const changes = pickLimits(request, LIMIT_NAMES);
        // Checked before creating, so a refused limit leaves no half-made project behind.
        context.platform.limits.assertMaySetProjectLimits(tenant.role, changes);
        const requestLogMax = context.platform.requestLog?.maxDays ?? 0;
        if (request.request_log_days !== undefined && request.request_log_days > requestLogMax) {
          throw errors.badRequest(`request_log_days: this instance keeps request logs at most ${requestLogMax} days (ALTO_REQUEST_LOG_MAX_DAYS)`);
        }
        const logBounds = { log_days: request.log_days, log_bytes: request.log_bytes };
        context.platform.appLogs.check(logBounds);
        const project = await context.platform.tenancy.createProject(tenant.accountId, request.name);
        if (Object.keys(changes).length > 0) await context.platform.limits.updateProjectLimits(tenant.role, project.id, changes);
        if (request.request_log_days !== undefined) await setRequestLogDays(context.platform, project.id, request.request_log_days);
        await context.platform.appLogs.set(project.id, logBounds);
        return { project: await projectView(project, context.platform) };
      },
    }),
    Update: endpoint({
      description:
        "Change a project's limits (and request_log_days, log_days, log_bytes): a number sets a limit (0 = none), null returns it to the free tier, a field left out keeps it. " +
        'Only the admin key may set a limit above the free tier.',
      access: 'manage',
      request: z.object({
        name: ProjectName,
        ...limitFieldsForUpdate(LIMIT_NAMES, "the instance's free tier applies"),
        request_log_days: RequestLogDays.nullable().optional().describe("days the request log keeps (0: none); null: the node's default; left out keeps it"),
        log_days: LogDays.nullable().optional().describe("days apps' log lines are kept; null: the node's default (ALTO_LOG_RETENTION_DAYS); left out keeps it"),
        log_bytes: LogBytes.nullable().optional().describe("bytes the project's apps' logs hold together; null: the node's default (ALTO_LOG_BYTES_PER_PROJECT); left out keeps it"),
      }),
      response: z.object({ project: Project }),
      example: { name: 'shop', rate_limit: 100, monthly_spend_cap_micros: 5000000 },
      async handler(request, context) {
        const tenant = context.tenant;
        const project = await context.platform.tenancy.findProject(tenant.accountId, request.name);
        const logBounds = { log_days: request.log_days, log_bytes: request.log_bytes };
        // Checked before anything changes, so a refused value leaves the other settings as they were.
        context.platform.appLogs.check(logBounds);
        await context.platform.limits.updateProjectLimits(tenant.role, project.id, pickLimits(request, LIMIT_NAMES));
        if (request.request_log_days !== undefined) await setRequestLogDays(context.platform, project.id, request.request_log_days);
        await context.platform.appLogs.set(project.id, logBounds);
        return { project: await projectView(project, context.platform) };
      },
    }),
    List: endpoint({
      description: "List your account's projects.",
      access: 'manage',
      request: z.object({}),
      response: z.object({ projects: z.array(Project) }),
      example: {},
      async handler(_request, context) {
        const projects = await context.platform.tenancy.listProjects(context.tenant.accountId);
        return { projects: await Promise.all(projects.map((project) => projectView(project, context.platform))) };
      },
    }),
    Environments: endpoint({
      description:
        "List a project's environments: the default one, each its keys belong to, each an owner or admin key acted in with the X-Alto-Environment header " +
        '(the data written there included), and each that holds apps or functions. The console picks among them; a project export carries them all.',
      access: 'manage',
      request: z.object({ name: ProjectName }),
      response: z.object({ default: z.string().describe('the default environment (apps at <app>.<project>)'), environments: z.array(z.string()).describe('sorted names') }),
      example: { name: 'shop' },
      async handler(request, context) {
        const project = await context.platform.tenancy.findProject(context.tenant.accountId, request.name);
        return { default: DEFAULT_ENVIRONMENT, environments: await projectEnvironments(context.platform, context.tenant, project, context.signal) };
      },
    }),
    Delete: endpoint({
      description: 'Delete a project and revoke every key that belongs to it.',
      access: 'manage',
      request: z.object({ name: ProjectName }),
      response: z.object({}),
      example: { name: 'shop' },
      async handler(request, context) {
        const project = await context.platform.tenancy.deleteProject(context.tenant, request.name);
        for (const service of context.platform.listServices()) {
          await service.deleteProjectData?.(project.id, context.platform);
        }
        return {};
      },
    }),
  },
});
