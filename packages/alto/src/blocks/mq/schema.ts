/**
 * @module blocks/mq/schema
 * The wire schema of the `mq` block, compatible with M3O's `mq` service: `Publish` and the
 * `Subscribe` stream, each message a JSON object under a topic.
 */
import { z } from 'zod';
import { MAX_TOPIC_LENGTH, NAME_RULE, TOPIC_PATTERN } from '../../store/events/port.js';

/** The same topic rule as the `event` block's, so a topic name works in both. */
const Topic = z.string({ error: 'expected a string, the topic' }).superRefine((value, context) => {
  if (value.length === 0) {
    context.addIssue({ code: 'custom', message: 'missing: name the topic, e.g. "events"' });
  } else if (value.length > MAX_TOPIC_LENGTH) {
    context.addIssue({ code: 'custom', message: `${value.length} characters; a topic has at most ${MAX_TOPIC_LENGTH}` });
  } else if (!TOPIC_PATTERN.test(value)) {
    context.addIssue({
      code: 'custom',
      message: `${JSON.stringify(value.slice(0, 60))} is not a valid topic: use ${NAME_RULE}, e.g. "events"`,
    });
  }
});

export const PublishRequest = z.object({
  topic: Topic.describe('the topic to publish to: letters, digits and . _ - : /, at most 200'),
  message: z
    .preprocess(
      (input) => (input === undefined || input === null ? {} : input),
      z.record(z.string(), z.unknown(), { error: 'expected a JSON object, the message to publish' }),
    )
    .describe('the JSON object to publish (an empty object by default)'),
});
export const PublishResponse = z.object({});

export const SubscribeRequest = z.object({ topic: Topic.describe('the topic to subscribe to') });
export const SubscribeResponse = z.object({
  topic: z.string().describe('the topic subscribed to'),
  message: z.record(z.string(), z.unknown()).describe('the next JSON message on the topic'),
});
