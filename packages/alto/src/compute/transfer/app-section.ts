/**
 * @module compute/transfer/app-section
 * The apps' section of a project archive (code): per app, its definition
 * (`app/<name>/app.json`): the image reference and digest, and the settings app/Run takes (port,
 * env vars, resources, scaling, volumes' mounts, TCP, links, health check, the names of its
 * secrets...). Functions' apps are left to the functions' section. The import deploys each app
 * through app/Run once every other entry is in (its secrets and data first), pulling its image
 * by reference on the target; the Run answers once the app's first instances are ready, so an
 * import that returns has apps that answer.
 *
 * Not carried: image blobs (the target pulls the reference again, so an image must be reachable
 * from it: an image of the source's own registry is not, unless the target reaches the source),
 * volume contents (the volumes start empty), custom domains (they point at the source), logs.
 */
import { errors } from '../../kit/errors.js';
import type { ProjectSection, SectionImport } from '../../platform/transfer/section.js';

/** What app/List shows of an app that app/Run takes back. */
const RUN_SETTINGS = [
  'port', 'env_vars', 'memory', 'cpus', 'min_instances', 'max_instances', 'concurrency', 'idle_timeout', 'pool', 'volumes', 'tcp',
  'outbound', 'stop_signal', 'stop_timeout', 'entrypoint', 'command', 'link_aliases', 'health_check', 'stack', 'links', 'follow_tag', 'secrets',
] as const;
const ENVIRONMENT = 'dev';

interface AppDefinition {
  name: string;
  image: string;
  digest: string;
  settings: Record<string, unknown>;
}

/** The apps read from the archive, deployed once every entry is in. */
const pending = new WeakMap<object, AppDefinition[]>();

export const appSection: ProjectSection = {
  name: 'app',
  kind: 'code',
  async export({ platform, project, archive, call }) {
    const functions = new Set((await platform.stores.functions.listOfProject(project.id)).map((record) => record.name));
    const { services } = await call<{ services: Array<Record<string, unknown> & { name: string; image: string; digest: string }> }>('app', 'List', ENVIRONMENT, {});
    for (const service of services) {
      if (functions.has(service.name)) continue;
      const settings: Record<string, unknown> = {};
      for (const name of RUN_SETTINGS) {
        const value = service[name];
        if (value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0)) settings[name] = value;
      }
      const definition: AppDefinition = { name: service.name, image: service.image, digest: service.digest, settings };
      await archive.json('app', `${service.name}/app.json`, definition, 1);
    }
  },
  async importEntry(context, entry) {
    const [name, file, ...rest] = entry.name.split('/');
    if (file !== 'app.json' || rest.length > 0) return context.warn(`app: the entry ${entry.name} is not known to this Alto and was left out`);
    const definition = await entry.json<AppDefinition>();
    if (definition.name !== name || typeof definition.image !== 'string' || typeof definition.settings !== 'object' || definition.settings === null) {
      throw errors.badRequest(`app ${name}: its definition is not one Alto writes`);
    }
    const apps = pending.get(context) ?? [];
    apps.push(definition);
    pending.set(context, apps);
  },
  async finishImport(context) {
    for (const app of pending.get(context) ?? []) await runApp(context, app);
  },
};

async function runApp(context: SectionImport, app: AppDefinition): Promise<void> {
  const settings: Record<string, unknown> = {};
  for (const name of RUN_SETTINGS) if (name in app.settings) settings[name] = app.settings[name];
  if (settings.volumes) context.warn(`app ${app.name}: its volumes are mounted again, empty: their contents are not in a project archive (alto backup copies them)`);
  await context.call('app', 'Run', ENVIRONMENT, { name: app.name, image: app.image, ...settings });
}
