/**
 * @module blocks/stream
 * The `stream` block: ephemeral channels of short text messages for chats, feeds and
 * timelines, M3O-compatible `CreateChannel`, `SendMessage`, `ListMessages` and `ListChannels`
 * with M3O's limits (512 characters, 1000 messages per channel, 1000 channels, 24 hours).
 */
import { errors } from '../../kit/errors.js';
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import {
  CreateChannelRequest,
  CreateChannelResponse,
  ListChannelsRequest,
  ListChannelsResponse,
  ListMessagesRequest,
  ListMessagesResponse,
  SendMessageRequest,
  SendMessageResponse,
} from './schema.js';
import { Streams } from './stream.js';

const streamStore = component('stream.store', (platform) => {
  const streams = new Streams(platform.stores.streams);
  streams.startPurging((error) => platform.log.warn({ err: error }, 'stream: could not purge expired messages'));
  return streams;
});

function use(context: CallContext): { streams: Streams; namespace: string } {
  return { streams: context.platform.use(streamStore), namespace: context.tenant.namespace };
}

const iso = (millis: number) => new Date(millis).toISOString();

export const streamService = defineService({
  name: 'stream',
  description: 'Ephemeral message channels for chats, feeds and timelines: messages last 24 hours.',
  priceMicros: 1,
  components: [streamStore],
  endpoints: {
    CreateChannel: endpoint({
      description: 'Create a channel by name, or change the description of one that exists.',
      request: CreateChannelRequest,
      response: CreateChannelResponse,
      example: { name: 'general', description: 'The channel for all things' },
      async handler(request, context) {
        const { streams, namespace } = use(context);
        await streams.createChannel(namespace, request.name, request.description);
        return {};
      },
    }),
    SendMessage: endpoint({
      description: 'Send a message (at most 512 characters) to a channel; a channel keeps its latest 1000 for 24 hours.',
      request: SendMessageRequest,
      response: SendMessageResponse,
      example: { channel: 'general', text: 'Hey checkout this tweet https://twitter.com/m3oservices/status/1455291054295498752' },
      async handler(request, context) {
        const { streams, namespace } = use(context);
        return { id: await streams.sendMessage(namespace, request.channel, request.text) };
      },
    }),
    ListMessages: endpoint({
      description: "List a channel's latest messages (default 25), oldest first; an unknown channel has none.",
      request: ListMessagesRequest,
      response: ListMessagesResponse,
      example: { channel: 'general' },
      async handler(request, context) {
        const { streams, namespace } = use(context);
        return {
          channel: request.channel,
          messages: (await streams.listMessages(namespace, request.channel, request.limit)).map((message) => ({
            id: message.id,
            text: message.text,
            timestamp: iso(message.createdAt),
            channel: message.channel,
            metadata: {},
          })),
        };
      },
    }),
    ListChannels: endpoint({
      description: 'List the channels active in the last 24 hours, by name.',
      request: ListChannelsRequest,
      response: ListChannelsResponse,
      example: {},
      async handler(_request, context) {
        const { streams, namespace } = use(context);
        return {
          channels: (await streams.listChannels(namespace)).map((channel) => ({
            name: channel.name,
            description: channel.description,
            last_active: iso(channel.lastActive),
          })),
        };
      },
    }),
  },
  async deleteProjectData(projectId, platform) {
    await platform.use(streamStore).deleteProject(projectId);
  },
});
