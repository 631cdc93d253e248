/**
 * @module blocks/event
 * The `event` block: a durable event log per topic. M3O-compatible `Publish`, `Consume` (a
 * websocket stream; `group` for consumers sharing the work, `offset` to replay from a time) and
 * `Read` (history), plus acknowledgements with redelivery (`autoAck: false`, `ackWait`, `Ack`)
 * and per-project `Retention`. Embedded SQLite log by default; NATS JetStream when Alto runs
 * with `--events nats://...`.
 */
import { errors } from '../../kit/errors.js';
import { component, defineService, endpoint, streamEndpoint, type CallContext } from '../../platform/service.js';
import { EventBlock } from './event.js';
import {
  AckRequest,
  AckResponse,
  ConsumeRequest,
  ConsumeResponse,
  PublishRequest,
  PublishResponse,
  ReadRequest,
  ReadResponse,
  RetentionRequest,
  RetentionResponse,
  SetRetentionRequest,
  SetRetentionResponse,
} from './schema.js';
import { eventSection } from './transfer.js';

/** The block's started instance (exported for tests that look at the open consumers). */
export const eventBlock = component('event.store', (platform) => {
  const block = new EventBlock(platform.stores.events, platform.log.child({ block: 'event' }));
  block.startRetention();
  return block;
});

function use(context: CallContext): { events: EventBlock; namespace: string } {
  return { events: context.platform.use(eventBlock), namespace: context.tenant.namespace };
}

export const eventService = defineService({
  name: 'event',
  description: 'A durable event log: publish to topics, consume live (alone or as a group sharing the work), replay and read history.',
  priceMicros: 1,
  components: [eventBlock],
  endpoints: {
    Publish: endpoint({
      description: 'Publish an event (a JSON object) to a topic. It is kept, in order, for the project\'s retention.',
      request: PublishRequest,
      response: PublishResponse,
      example: { topic: 'user', message: { id: '1', type: 'signup', user: 'john' } },
      async handler(request, context) {
        const { events, namespace } = use(context);
        return events.publish(namespace, request.topic, request.message);
      },
    }),
    Consume: streamEndpoint({
      description:
        'Consume a topic over a websocket, one message per event, in order. Without an offset only new events come; ' +
        'with a group the members share the events and the group resumes where it stopped. With autoAck false each ' +
        'event waits for event/Ack and is sent again after ackWait if not acknowledged.',
      request: ConsumeRequest,
      response: ConsumeResponse,
      example: { topic: 'user' },
      async *handler(request, context) {
        const { events, namespace } = use(context);
        yield* events.consume(namespace, request, context.signal);
      },
    }),
    Read: endpoint({
      description: 'Read the events kept on a topic, oldest first: `limit` of them (default 25) after skipping `offset`.',
      request: ReadRequest,
      response: ReadResponse,
      example: { topic: 'user' },
      async handler(request, context) {
        const { events, namespace } = use(context);
        return { events: await events.read(namespace, request.topic, request.offset, request.limit) };
      },
    }),
    Ack: endpoint({
      description:
        'Acknowledge an event consumed with autoAck false: it is done for the group and is not sent again (Alto addition).',
      request: AckRequest,
      response: AckResponse,
      example: { topic: 'user', group: 'workers', id: '123e4567-e89b-12d3-a456-426652340000' },
      async handler(request, context) {
        const { events, namespace } = use(context);
        return { acknowledged: await events.ack(namespace, request.topic, request.group, request.id) };
      },
    }),
    Retention: endpoint({
      description: "How long this project's events are kept and how many per topic (Alto addition).",
      request: RetentionRequest,
      response: RetentionResponse,
      example: {},
      async handler(_request, context) {
        const { events, namespace } = use(context);
        return events.retention(namespace);
      },
    }),
    SetRetention: endpoint({
      description:
        "Change how long this project's events are kept (maxAge, seconds) and how many per topic (maxEvents); " +
        'the default is 7 days and 100000 events (Alto addition).',
      request: SetRetentionRequest,
      response: SetRetentionResponse,
      example: { maxAge: 86400, maxEvents: 10000 },
      async handler(request, context) {
        const { events, namespace } = use(context);
        return events.setRetention(namespace, request);
      },
    }),
  },
  transfer: eventSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(eventBlock).store.deleteProject(projectId);
  },
});
