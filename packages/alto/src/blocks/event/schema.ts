/**
 * @module blocks/event/schema
 * The wire schema of the `event` block, compatible with M3O's `event` service (`Publish`,
 * `Consume`, `Read`: same fields, same defaults, a zero meaning "the default" as protobuf's
 * JSON has it), plus acknowledgements (`autoAck`, `ackWait`, `maxInFlight` on Consume, and
 * `Ack`), the delivery count, the event id from Publish, and the project's retention.
 */
import { z } from 'zod';
import { MAX_GROUP_LENGTH, MAX_TOPIC_LENGTH, NAME_RULE, RETENTION_LIMITS, TOPIC_PATTERN } from '../../store/events/port.js';

/** A topic or group name: clear 400s for missing, too long or odd characters. */
export function nameSchema(what: string, maxLength: number, example: string, options: { optional?: boolean } = {}) {
  return z.string({ error: `expected a string, the ${what}` }).superRefine((value, context) => {
    if (value.length === 0) {
      if (options.optional) return;
      context.addIssue({ code: 'custom', message: `missing: name the ${what}, e.g. "${example}"` });
    } else if (value.length > maxLength) {
      context.addIssue({ code: 'custom', message: `${value.length} characters; a ${what} has at most ${maxLength}` });
    } else if (!TOPIC_PATTERN.test(value)) {
      context.addIssue({
        code: 'custom',
        message: `${JSON.stringify(value.slice(0, 60))} is not a valid ${what}: use ${NAME_RULE}, e.g. "${example}"`,
      });
    }
  });
}

/** A whole number that protobuf JSON may send as a string, where 0 (unset) means `fallback`. */
function count(description: string, fallback: number, min: number, max: number) {
  return z
    .preprocess(
      (input) => {
        const value = typeof input === 'string' && /^\s*-?\d+\s*$/.test(input) ? Number(input) : input;
        return value === 0 || value === undefined || value === null ? fallback : value;
      },
      z
        .number({ error: 'expected a whole number' })
        .int({ error: 'expected a whole number' })
        .min(min, { error: `must be at least ${min}` })
        .max(max, { error: `must be at most ${max}` }),
    )
    .default(fallback)
    .describe(`${description}; default (or 0) ${fallback}`);
}

const Topic = nameSchema('topic', MAX_TOPIC_LENGTH, 'user.signup');
const Message = z
  .preprocess(
    (input) => (input === undefined || input === null ? {} : input),
    z.record(z.string(), z.unknown(), { error: 'expected a JSON object, the event to publish' }),
  )
  .describe('the JSON object to publish (an empty object by default)');
const Timestamp = z.string().describe('when the event was stored, RFC 3339 with milliseconds (UTC)');

export const PublishRequest = z.object({
  topic: Topic.describe('the topic to publish to: letters, digits and . _ - : /, at most 200'),
  message: Message,
});
export const PublishResponse = z.object({
  id: z.string().describe('the id of the stored event, as Consume and Read will show it (Alto addition)'),
});

export const ConsumeRequest = z.object({
  topic: Topic.describe('the topic to consume'),
  group: nameSchema('group', MAX_GROUP_LENGTH, 'workers', { optional: true })
    .default('')
    .describe(
      'consumers in the same group share the events (each goes to one of them) and the group remembers its place; ' +
        'without a group a consumer gets every event',
    ),
  offset: z
    .string({ error: 'expected a string, an RFC 3339 time such as 2006-01-02T15:04:05.999Z' })
    .default('')
    .describe(
      'replay from this time (RFC 3339, e.g. 2006-01-02T15:04:05.999Z): every kept event stored at or after it; ' +
        'default: only new events. For a group it applies when the group starts; an existing group goes on from its place',
    ),
  autoAck: z
    .boolean({ error: 'expected true or false' })
    .default(true)
    .describe(
      'true (M3O\'s behaviour): an event counts as handled once it is sent. false: each waits for event/Ack and is ' +
        'sent again (to a member of the group) if not acknowledged within ackWait; needs a group (Alto addition)',
    ),
  ackWait: z
    .preprocess(
      (input) => (input === 0 || input === undefined || input === null ? 30 : input),
      z
        .number({ error: 'expected a number of seconds' })
        .min(0.1, { error: 'must be at least 0.1 seconds' })
        .max(12 * 3600, { error: 'must be at most 43200 seconds (12 hours)' }),
    )
    .default(30)
    .describe('seconds an event may stay unacknowledged before it is sent again; default 30 (Alto addition)'),
  maxInFlight: count('most unacknowledged events this consumer holds at once, with autoAck false (Alto addition)', 100, 1, 10_000),
});
export const ConsumeResponse = z.object({
  id: z.string().describe('unique event id'),
  topic: z.string().describe('the topic consumed'),
  message: z.record(z.string(), z.unknown()).describe('the JSON message published'),
  timestamp: Timestamp,
  deliveries: z.number().int().describe('1 the first time; more when sent again after an unacknowledged ackWait (Alto addition)'),
});

export const ReadRequest = z.object({
  topic: Topic.describe('the topic to read'),
  limit: count('how many events to return, at most 1000', 25, 1, 1000),
  offset: count('how many of the oldest kept events to skip', 0, 0, Number.MAX_SAFE_INTEGER),
});
const Ev = z.object({
  id: z.string().describe('event id'),
  message: z.record(z.string(), z.unknown()).describe('event message'),
  timestamp: Timestamp,
});
export const ReadResponse = z.object({ events: z.array(Ev).describe('the events, oldest first') });

export const AckRequest = z.object({
  topic: Topic.describe('the topic the event came from'),
  group: nameSchema('group', MAX_GROUP_LENGTH, 'workers').describe('the group that consumed it'),
  id: z.string({ error: 'expected a string, the event id' }).min(1, { error: 'missing: the id of the event to acknowledge' }),
});
export const AckResponse = z.object({
  acknowledged: z
    .boolean()
    .describe(
      'true: the event is done for the group and will not be sent again. false: it was not awaiting an ' +
        'acknowledgement there (acknowledged already, an unknown id, topic or group, or handed out by a server ' +
        'process that has since restarted on NATS; it is then sent again after ackWait)',
    ),
});

const Retention = z.object({
  maxAge: z.number().int().describe('seconds an event is kept'),
  maxEvents: z.number().int().describe('most events kept per topic; the oldest go first'),
});
export const RetentionRequest = z.object({});
export const RetentionResponse = Retention;
export const SetRetentionRequest = z.object({
  maxAge: z
    .number({ error: 'expected a whole number of seconds' })
    .int({ error: 'expected a whole number of seconds' })
    .min(RETENTION_LIMITS.minAgeMs / 1000, { error: `must be at least ${RETENTION_LIMITS.minAgeMs / 1000} second` })
    .max(RETENTION_LIMITS.maxAgeMs / 1000, { error: `must be at most ${RETENTION_LIMITS.maxAgeMs / 1000} seconds (a year)` })
    .optional()
    .describe('seconds an event is kept (1 to 31536000); unchanged when left out'),
  maxEvents: z
    .number({ error: 'expected a whole number' })
    .int({ error: 'expected a whole number' })
    .min(1, { error: 'must be at least 1' })
    .max(RETENTION_LIMITS.maxEventsPerTopic, { error: `must be at most ${RETENTION_LIMITS.maxEventsPerTopic}` })
    .optional()
    .describe(`most events kept per topic (1 to ${RETENTION_LIMITS.maxEventsPerTopic}); unchanged when left out`),
});
export const SetRetentionResponse = Retention;
