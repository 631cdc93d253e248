/**
 * @module blocks/file/transfer
 * The file block's section of a project archive: per environment, every file of every grouping
 * (M3O's `project` field) as JSON lines, `file/<env>/files/…`, a page at a time.
 */
import { errors } from '../../kit/errors.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { FileRecord } from '../../store/files/port.js';

const PAGE = 500;

export const fileSection: ProjectSection = {
  name: 'file',
  kind: 'data',
  async export({ platform, environments, namespaceOf, archive, signal }) {
    const store = platform.stores.files;
    for (const environment of environments) {
      const namespace = namespaceOf(environment);
      const records = archive.records('file', `${environment}/files`);
      for (const project of await store.listProjects(namespace)) {
        let startAfter: string | undefined;
        while (true) {
          signal.throwIfAborted();
          const page = await store.list(namespace, project, { pathPrefix: '', startAfter, limit: PAGE });
          for (const file of page) await records.write(file);
          if (page.length < PAGE) break;
          startAfter = page[page.length - 1].path;
        }
      }
      await records.close();
    }
  },
  async importEntry(context, entry) {
    const [environment, kind] = entry.name.split('/');
    if (kind !== 'files') return context.warn(`file: the entry ${entry.name} is not known to this Alto and was left out`);
    const namespace = context.namespaceOf(context.environmentOf(environment));
    for (const file of await entry.lines<FileRecord>()) {
      if (typeof file.project !== 'string' || typeof file.path !== 'string' || !file.path.startsWith('/') || typeof file.content !== 'string') {
        throw errors.badRequest('a file record is not one the file block writes');
      }
      await context.platform.stores.files.save(namespace, {
        project: file.project,
        path: file.path,
        content: file.content,
        metadata: typeof file.metadata === 'object' && file.metadata !== null ? file.metadata : {},
        public: file.public === true,
        at: Number(file.updatedAt) || Date.now(),
      });
    }
  },
};
