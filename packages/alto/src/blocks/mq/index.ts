/**
 * @module blocks/mq
 * The `mq` block: fire-and-forget publish and subscribe, M3O-compatible `Publish` and
 * `Subscribe` (a websocket stream). Nothing is kept: a subscriber gets what is published while
 * it listens. In-process by default; over NATS subjects when Alto runs with `--events nats://...`,
 * so subscribers on every replica get every message.
 */
import { errors } from '../../kit/errors.js';
import { component, defineService, endpoint, streamEndpoint, type CallContext } from '../../platform/service.js';
import { MqBlock } from './mq.js';
import { PublishRequest, PublishResponse, SubscribeRequest, SubscribeResponse } from './schema.js';

/** The block's started instance (exported for tests that count subscribers). */
export const mqBlock = component('mq.bus', (platform) => new MqBlock(platform.stores.messages));

function use(context: CallContext): { mq: MqBlock; namespace: string } {
  return { mq: context.platform.use(mqBlock), namespace: context.tenant.namespace };
}

export const mqService = defineService({
  name: 'mq',
  description: 'Fire-and-forget messaging: publish JSON messages to a topic; every subscriber listening gets them.',
  priceMicros: 1,
  components: [mqBlock],
  endpoints: {
    Publish: endpoint({
      description: 'Publish a message (a JSON object) to a topic. Subscribers listening now get it; nothing is kept.',
      request: PublishRequest,
      response: PublishResponse,
      example: { topic: 'events', message: { id: '1', type: 'signup', user: 'john' } },
      async handler(request, context) {
        const { mq, namespace } = use(context);
        await mq.publish(namespace, request.topic, request.message);
        return {};
      },
    }),
    Subscribe: streamEndpoint({
      description:
        'Subscribe to a topic over a websocket: one message per message published while subscribed, in order. ' +
        'A subscriber more than 1000 messages behind is disconnected (429).',
      request: SubscribeRequest,
      response: SubscribeResponse,
      example: { topic: 'events' },
      async *handler(request, context) {
        const { mq, namespace } = use(context);
        yield* mq.subscribe(namespace, request.topic, context.signal);
      },
    }),
  },
});
