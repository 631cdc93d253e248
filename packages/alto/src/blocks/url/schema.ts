/**
 * @module blocks/url/schema
 * The wire schema of the `url` block, compatible with M3O's `url` service, plus `permanent`
 * (301 instead of 302) and hit counts in Resolve.
 */
import { z } from 'zod';

const DestinationUrl = z
  .string({ error: 'required: the http or https URL to redirect to, e.g. https://example.com/page' })
  .min(1, 'required: the http or https URL to redirect to, e.g. https://example.com/page');
const Permanent = z
  .boolean()
  .optional()
  .describe('redirect with 301 Moved Permanently (browsers cache it) instead of 302 Found; default false');
const ById = z.string().optional().describe('the short id, e.g. my-url');
const ByShortUrl = z.string().optional().describe('the short URL, e.g. https://alto.example.com/u/my-url');

export const UrlPair = z
  .object({
    id: z.string().describe('the short id'),
    shortURL: z.string().describe('the short URL, which redirects to destinationURL'),
    destinationURL: z.string().describe('where the short URL redirects to'),
    hitCount: z.number().int().describe('how many times the short URL was followed'),
    permanent: z.boolean().describe('true: redirects with 301; false: with 302'),
    created: z.string().describe('creation time, RFC 3339'),
    updated: z.string().describe('last change, RFC 3339'),
  })
  .meta({ id: 'URLPair' });

export const ShortenRequest = z.object({
  destinationURL: DestinationUrl.describe('the URL to shorten (http or https)'),
  permanent: Permanent,
});
export const ShortenResponse = z.object({ shortURL: z.string().describe('the shortened URL') });

export const CreateRequest = z.object({
  id: z.string().optional().describe('the short id you want, e.g. my-url (unique on this server); a random one when empty'),
  destinationURL: DestinationUrl.describe('the URL to redirect to (http or https)'),
  permanent: Permanent,
});
export const CreateResponse = z.object({ url: UrlPair });

export const ListRequest = z.object({ shortURL: z.string().optional().describe('only this short URL (optional)') });
export const ListResponse = z.object({ urlPairs: z.array(UrlPair) });

export const ResolveRequest = z.object({ id: ById, shortURL: ByShortUrl });
export const ResolveResponse = z.object({
  destinationURL: z.string(),
  hitCount: z.number().int().describe('how many times the short URL was followed'),
  permanent: z.boolean(),
});

export const UpdateRequest = z.object({
  id: ById,
  shortURL: ByShortUrl,
  destinationURL: z.string().optional().describe('the new destination (http or https)'),
  permanent: Permanent,
});
export const UpdateResponse = z.object({});

export const DeleteRequest = z.object({ id: ById, shortURL: ByShortUrl });
export const DeleteResponse = z.object({});
