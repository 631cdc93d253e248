/**
 * @module blocks/search/transfer
 * The search block's section of a project archive: per environment and index, its documents as
 * JSON lines (`search/<env>/<index>/…`; an empty index has an empty `created.json`). The import
 * indexes them again through the block's own logic, which flattens their text.
 */
import { entryPart, entryPartText } from '../../platform/transfer/archive.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { Component } from '../../platform/service.js';
import type { SearchIndexes } from './search-indexes.js';

const PAGE = 500;

export function searchSection(searchIndexes: Component<SearchIndexes>): ProjectSection {
  return {
    name: 'search',
    kind: 'data',
    async export({ platform, environments, namespaceOf, archive, signal }) {
      const store = platform.stores.search;
      for (const environment of environments) {
        const namespace = namespaceOf(environment);
        for (const index of await store.listIndexes(namespace)) {
          const folder = `${environment}/${entryPart(index)}`;
          await archive.json('search', `${folder}/created.json`, { index });
          const records = archive.records('search', `${folder}/documents`);
          for (let offset = 0; ; offset += PAGE) {
            signal.throwIfAborted();
            const page = (await store.search(namespace, index, undefined, { limit: PAGE, offset })) ?? [];
            for (const hit of page) await records.write({ id: hit.id, data: hit.data });
            if (page.length < PAGE) break;
          }
          await records.close();
        }
      }
    },
    async importEntry(context, entry) {
      const [environment, part, kind, ...rest] = entry.name.split('/');
      const namespace = context.namespaceOf(context.environmentOf(environment));
      const index = entryPartText(part);
      const indexes = context.platform.use(searchIndexes);
      if (kind === 'created.json' && rest.length === 0) await indexes.createIndex(namespace, index);
      else if (kind === 'documents' && rest.length === 1) {
        for (const document of await entry.lines<{ id: string; data: Record<string, unknown> }>()) await indexes.index(namespace, index, String(document.id), document.data);
      } else context.warn(`search: the entry ${entry.name} is not known to this Alto and was left out`);
    },
  };
}
