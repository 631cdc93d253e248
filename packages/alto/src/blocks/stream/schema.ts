/**
 * @module blocks/stream/schema
 * The wire schema of the `stream` block, compatible with M3O's `stream` service: channels of
 * short text messages (`CreateChannel`, `SendMessage`, `ListMessages`, `ListChannels`), with
 * M3O's limits, plus the message id from SendMessage.
 */
import { z } from 'zod';
import { LIMITS } from './stream.js';

const NAME = /^[A-Za-z0-9_\-.:/]+$/;

function channelName(field: string) {
  return z.string({ error: `expected a string, the ${field}` }).superRefine((value, context) => {
    if (value.length === 0) {
      context.addIssue({ code: 'custom', message: `missing: name the ${field}, e.g. "general"` });
    } else if (value.length > LIMITS.maxChannelNameLength) {
      context.addIssue({ code: 'custom', message: `${value.length} characters; a channel name has at most ${LIMITS.maxChannelNameLength}` });
    } else if (!NAME.test(value)) {
      context.addIssue({
        code: 'custom',
        message: `${JSON.stringify(value.slice(0, 60))} is not a valid channel name: use letters, digits and . _ - : /, e.g. "general"`,
      });
    }
  });
}

const Message = z.object({
  id: z.string().describe('id of the message'),
  text: z.string().describe('text of the message'),
  timestamp: z.string().describe('time of message creation, RFC 3339 (UTC)'),
  channel: z.string().describe('the channel name'),
  metadata: z.record(z.string(), z.string()).describe('the associated metadata (empty: Alto fetches no link previews)'),
});
const Channel = z.object({
  name: z.string().describe('name of the channel'),
  description: z.string().describe('description for the channel'),
  last_active: z.string().describe('last activity time, RFC 3339 (UTC)'),
});

export const CreateChannelRequest = z.object({
  name: channelName('channel').describe(`name of the channel: letters, digits and . _ - : /, at most ${LIMITS.maxChannelNameLength}`),
  description: z
    .string({ error: 'expected a string, the description' })
    .max(LIMITS.maxDescriptionLength, { error: `at most ${LIMITS.maxDescriptionLength} characters` })
    .default('')
    .describe('description for the channel'),
});
export const CreateChannelResponse = z.object({});

export const SendMessageRequest = z.object({
  channel: channelName('channel').describe('the channel to send to (created if it does not exist)'),
  text: z
    .string({ error: 'expected a string, the message text' })
    .min(1, { error: 'missing: the message text' })
    .refine((text) => [...text].length <= LIMITS.maxMessageLength, {
      error: `longer than ${LIMITS.maxMessageLength} characters, the most a message holds`,
    })
    .describe(`the message text, at most ${LIMITS.maxMessageLength} characters`),
});
export const SendMessageResponse = z.object({ id: z.string().describe('id of the message (Alto addition)') });

export const ListMessagesRequest = z.object({
  channel: channelName('channel').describe('the channel to list'),
  limit: z
    .preprocess(
      (input) => (input === 0 || input === undefined || input === null ? 25 : input),
      z
        .number({ error: 'expected a whole number' })
        .int({ error: 'expected a whole number' })
        .min(1, { error: 'must be at least 1' })
        .max(LIMITS.maxMessagesPerChannel, { error: `must be at most ${LIMITS.maxMessagesPerChannel}` }),
    )
    .default(25)
    .describe(`number of messages to return, the latest ones; default (or 0) 25, at most ${LIMITS.maxMessagesPerChannel}`),
});
export const ListMessagesResponse = z.object({
  channel: z.string().describe('the channel listed'),
  messages: z.array(Message).describe('messages in chronological order'),
});

export const ListChannelsRequest = z.object({});
export const ListChannelsResponse = z.object({ channels: z.array(Channel).describe('the active channels, by name') });
