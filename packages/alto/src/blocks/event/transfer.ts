/**
 * @module blocks/event/transfer
 * The event block's section of a project archive: per environment, the retention policy
 * (`event/<env>/retention.json`) and each topic's retained events, oldest first, as JSON lines
 * (`event/<env>/<topic>/…`). On the target each event is published again in the same order, so
 * it gets a new id and the time of the import; consumer groups' positions are not carried.
 */
import { entryPart, entryPartText } from '../../platform/transfer/archive.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import { MAX_TOPIC_LENGTH, RETENTION_LIMITS, TOPIC_PATTERN, type RetentionPolicy, type StoredEvent } from '../../store/events/port.js';
import { errors } from '../../kit/errors.js';

const PAGE = 1000;

export const eventSection: ProjectSection = {
  name: 'event',
  kind: 'data',
  async export({ platform, environments, namespaceOf, archive, signal }) {
    const store = platform.stores.events;
    for (const environment of environments) {
      const namespace = namespaceOf(environment);
      const topics = await store.listTopics(namespace);
      if (topics.length === 0) continue;
      await archive.json('event', `${environment}/retention.json`, await store.retention(namespace));
      for (const topic of topics) {
        const records = archive.records('event', `${environment}/topics/${entryPart(topic)}`);
        for (let offset = 0; ; offset += PAGE) {
          signal.throwIfAborted();
          const page = await store.read(namespace, topic, { offset, limit: PAGE });
          for (const event of page) await records.write({ message: event.message, timestamp: event.timestamp });
          if (page.length < PAGE) break;
        }
        await records.close();
      }
    }
  },
  async importEntry(context, entry) {
    const [environment, kind, part, ...rest] = entry.name.split('/');
    const namespace = context.namespaceOf(context.environmentOf(environment));
    const store = context.platform.stores.events;
    if (kind === 'retention.json' && !part) {
      const policy = await entry.json<RetentionPolicy>();
      const maxAgeMs = Math.min(Math.max(Number(policy.maxAgeMs) || RETENTION_LIMITS.minAgeMs, RETENTION_LIMITS.minAgeMs), RETENTION_LIMITS.maxAgeMs);
      const maxEventsPerTopic = Math.min(Math.max(Math.floor(Number(policy.maxEventsPerTopic)) || 1, 1), RETENTION_LIMITS.maxEventsPerTopic);
      await store.setRetention(namespace, { maxAgeMs, maxEventsPerTopic });
    } else if (kind === 'topics' && part && rest.length === 1) {
      const topic = entryPartText(part);
      if (!TOPIC_PATTERN.test(topic) || topic.length > MAX_TOPIC_LENGTH) throw errors.badRequest(`the topic ${JSON.stringify(topic.slice(0, 80))} is not a valid topic name`);
      for (const event of await entry.lines<Pick<StoredEvent, 'message'>>()) {
        if (typeof event.message !== 'object' || event.message === null || Array.isArray(event.message)) throw errors.badRequest('an event\'s message is not a JSON object');
        await store.publish(namespace, topic, event.message);
      }
    } else context.warn(`event: the entry ${entry.name} is not known to this Alto and was left out`);
  },
};
