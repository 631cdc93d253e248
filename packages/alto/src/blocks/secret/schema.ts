/**
 * @module blocks/secret/schema
 * The wire schema of the `secret` block, after M3O's `secret` service (fields `key`, `path`,
 * `value`). Here `path` is a folder-like grouping ("prod/eu"), "" for the top level.
 */
import { z } from 'zod';

const Key = z.string({ error: 'expected a string, the key of the secret' }).describe('the key of the secret, e.g. "stripe_key"');
const Path = z
  .string({ error: 'expected a string, a folder-like path such as "prod/eu"' })
  .default('')
  .describe('optional folder-like grouping, e.g. "prod/eu"; default "" (the top level)');

export const GetRequest = z.object({ key: Key, path: Path });
export const GetResponse = z.object({
  key: z.string().describe('the key'),
  path: z.string().describe('the path ("" for the top level)'),
  value: z.string().describe('the secret value'),
  created: z.string().describe('when the secret was first set (RFC 3339)'),
  updated: z.string().describe('when the secret was last set (RFC 3339)'),
});

export const SetRequest = z.object({
  key: Key,
  path: Path,
  value: z.string({ error: 'expected a string, the secret value' }).describe('the secret value; stored encrypted'),
});
export const SetResponse = z.object({});

export const DeleteRequest = z.object({ key: Key, path: Path });
export const DeleteResponse = z.object({});

export const ListRequest = z.object({ path: Path });
export const ListResponse = z.object({
  keys: z.array(z.string()).describe('the keys directly at this path, sorted'),
  paths: z.array(z.string()).describe('the paths beneath this one that hold secrets, sorted'),
});
