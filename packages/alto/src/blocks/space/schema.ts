/**
 * @module blocks/space/schema
 * The wire schema of the `space` block, compatible with M3O's `space` service (same endpoints,
 * field names and defaults: visibility "private"), plus `contentType` on writes, `limit` and
 * `startAfter` paging on List, `expiresIn` on Download and Upload, and size, content type and
 * SHA-256 on every object description.
 */
import { z } from 'zod';

const Name = z
  .string({ error: 'expected a string, the name of the object' })
  .describe('the name of the object; "/" makes folders, e.g. "images/cat.jpg"');

/** proto3 clients send "" for an unset field: that means the default too. */
const Visibility = z
  .preprocess(
    (input) => (input === '' || input === null ? undefined : typeof input === 'string' ? input.toLowerCase() : input),
    z.enum(['public', 'private'], { error: 'expected "public" or "private"' }).default('private'),
  )
  .describe('"public" (anyone with the URL can read it) or "private" (the default: only with a key or a presigned URL)');

const ObjectData = z
  .string({ error: 'expected a string, the object base64-encoded' })
  .default('')
  .describe('the content, base64-encoded; at most 10 MiB decoded (use Upload for larger objects)');

const ContentType = z
  .string({ error: 'expected a string such as "image/png"' })
  .default('')
  .describe('the content type served with the object (Alto addition); default: guessed from the name');

const ExpiresIn = int('seconds the URL stays valid (Alto addition): 1 to 604800 (7 days); default 3600', 1, 604_800).default(3600);

const ObjectFields = {
  name: z.string(),
  created: z.string().describe('when the object was first written (RFC 3339)'),
  modified: z.string().describe('when it was last written (RFC 3339)'),
  url: z.string().describe('the stable URL of a public object; empty for a private one'),
  visibility: z.string().describe('"public" or "private"'),
  size: z.number().int().describe('bytes (Alto addition)'),
  contentType: z.string().describe('the content type it is served with (Alto addition)'),
  sha256: z.string().describe('hex SHA-256 of the content (Alto addition)'),
};
export const ObjectDescription = z.object(ObjectFields);

export const CreateRequest = z.object({ name: Name, object: ObjectData, visibility: Visibility, contentType: ContentType });
export const CreateResponse = z.object({ url: z.string().describe('the public URL when visibility is "public"; empty otherwise') });

export const UpdateRequest = CreateRequest;
export const UpdateResponse = CreateResponse;

export const DeleteRequest = z.object({ name: Name });
export const DeleteResponse = z.object({});

export const ListRequest = z.object({
  prefix: z.string({ error: 'expected a string' }).default('').describe('only names starting with this, e.g. "images/"; default: every object'),
  limit: int('most objects in the answer (Alto addition): 1 to 1000, default 1000', 1, 1000).default(1000),
  startAfter: z
    .string({ error: 'expected a string' })
    .default('')
    .describe('only names after this one (Alto addition): the nextStartAfter of the previous page'),
});
export const ListResponse = z.object({
  objects: z.array(ObjectDescription).describe('sorted by name'),
  nextStartAfter: z.string().describe('when more objects follow, pass this as startAfter for the next page; empty on the last page'),
});

export const HeadRequest = z.object({ name: Name });
export const HeadResponse = z.object({ object: ObjectDescription });

export const ReadRequest = z.object({ name: Name });
export const ReadResponse = z.object({
  object: z.object({ ...ObjectFields, data: z.string().describe('the content, base64-encoded') }),
});

export const DownloadRequest = z.object({ name: Name, expiresIn: ExpiresIn });
export const DownloadResponse = z.object({
  url: z.string().describe('a presigned URL: GET it, no key needed, until it expires'),
  expires: z.string().describe('when the URL stops working (RFC 3339; Alto addition)'),
});

export const UploadRequest = z.object({ name: Name, visibility: Visibility, expiresIn: ExpiresIn });
export const UploadResponse = z.object({
  url: z.string().describe('a presigned URL: PUT the object as the request body, no key needed, until it expires'),
  expires: z.string().describe('when the URL stops working (RFC 3339; Alto addition)'),
});

/** An integer in a range, sent as a JSON number or, as protobuf's JSON mapping writes int64, a decimal string. */
function int(description: string, min: number, max: number) {
  return z
    .preprocess(
      (input) => (typeof input === 'string' && /^\s*\d+\s*$/.test(input) ? Number(input) : input),
      z
        .number({ error: 'expected an integer' })
        .int({ error: 'expected an integer' })
        .min(min, { error: `expected ${min} to ${max}` })
        .max(max, { error: `expected ${min} to ${max}` }),
    )
    .describe(description);
}
