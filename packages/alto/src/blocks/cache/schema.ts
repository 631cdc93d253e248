/**
 * @module blocks/cache/schema
 * The wire schema of the `cache` block, compatible with M3O's `cache` service (same endpoints,
 * field names and defaults), plus `prefix` on ListKeys and the bulk GetMany and SetMany.
 * M3O's int64 fields (`ttl`, `value` of Increment) arrive as JSON numbers or, as protobuf's
 * JSON mapping writes them, as decimal strings; both are accepted.
 */
import { z } from 'zod';

/** An integer sent as a JSON number or as a decimal string (protobuf JSON's int64). */
function int64(description: string) {
  return z
    .preprocess(
      (input) => (typeof input === 'string' && /^\s*-?\d+\s*$/.test(input) ? Number(input) : input),
      z.number({ error: 'expected an integer' }).int({ error: 'expected an integer' }).refine(Number.isSafeInteger, {
        error: `expected an integer between -${Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`,
      }),
    )
    .describe(description);
}

const Key = z.string({ error: 'expected a string, the key of the entry' }).describe('the key');
const Ttl = int64('time to live in seconds; 0 (the default) keeps the value until it is deleted').default(0);
const Status = z.object({ status: z.string().describe('"ok" when the call succeeded') });

export const GetRequest = z.object({ key: Key });
export const GetResponse = z.object({
  key: z.string().describe('the key'),
  value: z.string().describe('the value; empty when the key does not exist'),
  ttl: z.number().int().describe('seconds left before the value expires; 0 when it never does (or does not exist)'),
});

export const SetRequest = z.object({
  key: Key,
  value: z.string({ error: 'expected a string, the value to store' }).describe('the value to store'),
  ttl: Ttl,
});
export const SetResponse = Status;

export const DeleteRequest = z.object({ key: Key });
export const DeleteResponse = Status;

export const IncrementRequest = z.object({
  key: Key,
  value: int64('the amount to add (default 0, as in M3O)').default(0),
});
export const IncrementResponse = z.object({
  key: z.string().describe('the key'),
  value: z.number().int().describe('the new value'),
});

export const DecrementRequest = z.object({
  key: Key,
  value: int64('the amount to subtract (default 0, as in M3O)').default(0),
});
export const DecrementResponse = IncrementResponse;

export const ListKeysRequest = z.object({
  prefix: z.string().default('').describe('only keys starting with this text (Alto addition); default: every key'),
});
export const ListKeysResponse = z.object({ keys: z.array(z.string()).describe('the keys, sorted') });

export const GetManyRequest = z.object({
  keys: z.array(Key).describe('the keys to read'),
});
export const CacheItem = z.object({
  key: z.string(),
  value: z.string(),
  ttl: z.number().int().describe('seconds left before the value expires; 0 when it never does'),
});
export const GetManyResponse = z.object({
  items: z.array(CacheItem).describe('the keys that exist, in the order asked; missing keys are left out'),
});

export const SetManyRequest = z.object({
  items: z
    .array(
      z.object({
        key: Key,
        value: z.string({ error: 'expected a string, the value to store' }),
        ttl: Ttl,
      }),
    )
    .describe('the entries to write, all or none'),
});
export const SetManyResponse = Status;
