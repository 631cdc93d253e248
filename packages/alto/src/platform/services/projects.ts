/**
 * @module platform/services/projects
 * `projects/*`: create, list and delete the projects of the caller's account.
 */
import { z } from 'zod';
import { defineService, endpoint, type CallContext } from '../service.js';
import type { ProjectRecord } from '../../store/control.js';
import { errors } from '../../kit/errors.js';
import type { Tenant } from '../service.js';

export const Project = z
  .object({
    id: z.string(),
    name: z.string(),
    created: z.string().describe('creation time, RFC 3339'),
  })
  .meta({ id: 'Project' });

export function projectView(project: ProjectRecord): z.infer<typeof Project> {
  return { id: project.id, name: project.name, created: new Date(project.createdAt).toISOString() };
}

/** The tenant of a `manage` endpoint: the edge guarantees one is present. */
export function caller(context: CallContext): Tenant {
  if (!context.tenant) throw errors.unauthorized('this endpoint needs an API key');
  return context.tenant;
}

const ProjectName = z.string().min(1).describe('project name: lower-case letters, digits and dashes');

export const projectsService = defineService({
  name: 'projects',
  description: 'Projects group keys and data: every key belongs to one project, and blocks keep each project apart.',
  priceMicros: 0,
  endpoints: {
    Create: endpoint({
      description: 'Create a project in your account.',
      access: 'manage',
      request: z.object({ name: ProjectName }),
      response: z.object({ project: Project }),
      example: { name: 'shop' },
      async handler(request, context) {
        const project = await context.platform.tenancy.createProject(caller(context).accountId, request.name);
        return { project: projectView(project) };
      },
    }),
    List: endpoint({
      description: "List your account's projects.",
      access: 'manage',
      request: z.object({}),
      response: z.object({ projects: z.array(Project) }),
      example: {},
      async handler(_request, context) {
        const projects = await context.platform.tenancy.listProjects(caller(context).accountId);
        return { projects: projects.map(projectView) };
      },
    }),
    Delete: endpoint({
      description: 'Delete a project and revoke every key that belongs to it.',
      access: 'manage',
      request: z.object({ name: ProjectName }),
      response: z.object({}),
      example: { name: 'shop' },
      async handler(request, context) {
        const project = await context.platform.tenancy.deleteProject(caller(context), request.name);
        for (const service of context.platform.listServices()) {
          await service.deleteProjectData?.(project.id, context.platform);
        }
        return {};
      },
    }),
  },
});
