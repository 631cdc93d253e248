/**
 * @module blocks/db/transfer
 * The db block's section of a project archive: per environment and table, its indexes
 * (`db/<env>/<table>/indexes.json`) and its records as JSON lines (`db/<env>/<table>/records/…`),
 * read in creation order a page at a time. Imported records keep their ids and data; their
 * revisions start again at 1.
 */
import { entryPart, entryPartText } from '../../platform/transfer/archive.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { NewRecord } from '../../store/documents/port.js';
import { parseFieldPath } from '../../store/documents/query.js';
import { tableName } from './records.js';

const PAGE = 1000;

export const dbSection: ProjectSection = {
  name: 'db',
  kind: 'data',
  async export({ platform, environments, namespaceOf, archive, signal }) {
    const store = platform.stores.documents;
    for (const environment of environments) {
      const namespace = namespaceOf(environment);
      for (const table of await store.listTables(namespace)) {
        const folder = `${environment}/${entryPart(table)}`;
        const indexes = (await store.listIndexes(namespace, table)).map((index) => index.field);
        if (indexes.length > 0) await archive.json('db', `${folder}/indexes.json`, indexes);
        const records = archive.records('db', `${folder}/records`);
        for (let offset = 0; ; offset += PAGE) {
          signal.throwIfAborted();
          const page = await store.find(namespace, table, { order: 'asc', limit: PAGE, offset });
          for (const record of page) await records.write({ id: record.id, data: record.data });
          if (page.length < PAGE) break;
        }
        await records.close();
      }
    }
  },
  async importEntry(context, entry) {
    const [environment, table, ...rest] = entry.name.split('/');
    const namespace = context.namespaceOf(context.environmentOf(environment));
    const name = tableName(entryPartText(table));
    const store = context.platform.stores.documents;
    if (rest.length === 1 && rest[0] === 'indexes.json') {
      for (const field of await entry.json<string[]>()) await store.createIndex(namespace, name, parseFieldPath(String(field), 'index'));
    } else if (rest[0] === 'records' && rest.length === 2) {
      const records = await entry.lines<NewRecord>();
      for (let start = 0; start < records.length; start += PAGE) {
        await store.create(namespace, name, records.slice(start, start + PAGE).map((record) => ({ id: String(record.id), data: record.data })));
      }
    } else context.warn(`db: the entry ${entry.name} is not known to this Alto and was left out`);
  },
};
