/**
 * @module blocks/url/transfer
 * The url block's section of a project archive: per environment, the short URLs as JSON lines
 * (`url/<env>/urls/…`). Short ids are shared by every project of an instance, so an id taken on
 * the target (always so when the project is imported beside itself) gets a new id, and the
 * import's report says which. Hit counts start again at 0.
 */
import { isAltoError } from '../../kit/errors.js';
import type { Component } from '../../platform/service.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { ShortUrlRecord } from '../../store/urls/port.js';
import type { ShortUrls } from './short-urls.js';

export function urlSection(shortUrls: Component<ShortUrls>): ProjectSection {
  return {
    name: 'url',
    kind: 'data',
    async export({ platform, environments, namespaceOf, archive }) {
      for (const environment of environments) {
        const records = archive.records('url', `${environment}/urls`);
        for (const url of await platform.stores.urls.list(namespaceOf(environment))) await records.write(url);
        await records.close();
      }
    },
    async importEntry(context, entry) {
      const [environment, kind, ...rest] = entry.name.split('/');
      if (kind !== 'urls' || rest.length !== 1) return context.warn(`url: the entry ${entry.name} is not known to this Alto and was left out`);
      const namespace = context.namespaceOf(context.environmentOf(environment));
      const urls = context.platform.use(shortUrls);
      for (const url of await entry.lines<ShortUrlRecord>()) {
        try {
          await urls.create(namespace, String(url.id), String(url.destination), url.permanent === true);
        } catch (error) {
          if (!isAltoError(error) || error.status !== 409) throw error;
          const moved = await urls.shorten(namespace, String(url.destination), url.permanent === true);
          context.warn(`url: the short id "${url.id}" is taken on this instance by another project; it is now "${moved.id}"`);
        }
      }
    },
  };
}
