/**
 * @module blocks/space/transfer
 * The space block's section of a project archive. Per environment, a page of objects at a time:
 * `space/<env>/pages/<n>.json` (each object's name, size, content type and visibility), then
 * each object of the page, streamed from the store into `space/<env>/objects/<name>` (the name
 * encoded as one path part), so no object is ever held whole in memory.
 */
import { entryPart } from '../../platform/transfer/archive.js';
import { errors } from '../../kit/errors.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { Visibility } from '../../store/objects/port.js';

const PAGE = 500;

interface ObjectEntry {
  name: string;
  part: string;
  size: number;
  contentType: string;
  visibility: Visibility;
}

/** The page of objects read last, by entry part, while its objects arrive. */
const pages = new WeakMap<object, Map<string, ObjectEntry>>();

export const spaceSection: ProjectSection = {
  name: 'space',
  kind: 'data',
  async export({ platform, environments, namespaceOf, archive, signal }) {
    const store = platform.stores.objects;
    for (const environment of environments) {
      const namespace = namespaceOf(environment);
      let startAfter: string | undefined;
      for (let pageNumber = 1; ; pageNumber++) {
        signal.throwIfAborted();
        const page = await store.list(namespace, { startAfter, limit: PAGE });
        if (page.objects.length === 0) break;
        const entries: ObjectEntry[] = page.objects.map((object) => ({ name: object.name, part: entryPart(object.name), size: object.size, contentType: object.contentType, visibility: object.visibility }));
        await archive.json('space', `${environment}/pages/${String(pageNumber).padStart(6, '0')}.json`, entries);
        for (const object of entries) {
          const read = await store.get(namespace, object.name);
          // Deleted since it was listed: left out, and said so by its absence from the objects.
          if (!read) continue;
          await archive.stream('space', `${environment}/objects/${object.part}`, read.info.size, read.body);
        }
        if (!page.nextStartAfter) break;
        startAfter = page.nextStartAfter;
      }
    }
  },
  async importEntry(context, entry) {
    const [environment, kind, part, ...rest] = entry.name.split('/');
    const namespace = context.namespaceOf(context.environmentOf(environment));
    if (kind === 'pages' && part && rest.length === 0) {
      const entries = await entry.json<ObjectEntry[]>();
      if (!Array.isArray(entries)) throw errors.badRequest('a page of objects is not a list');
      pages.set(context, new Map(entries.map((object) => [String(object.part), object])));
      return;
    }
    if (kind !== 'objects' || !part || rest.length > 0) return context.warn(`space: the entry ${entry.name} is not known to this Alto and was left out`);
    const object = pages.get(context)?.get(part);
    if (!object || typeof object.name !== 'string') throw errors.badRequest('an object comes without its page of names: the archive was altered');
    await context.platform.stores.objects.put(namespace, object.name, entry.body, {
      contentType: typeof object.contentType === 'string' ? object.contentType : 'application/octet-stream',
      visibility: object.visibility === 'public' ? 'public' : 'private',
      expectedBytes: entry.size,
    });
  },
};
