/**
 * @module blocks/id/schema
 * The wire schema of the `id` block, compatible with M3O's `id` service.
 */
import { z } from 'zod';
import { ID_TYPES } from './generate.js';

const IdTypeName = z
  .string()
  .default('uuid')
  .describe(`type of id: ${ID_TYPES.join(', ')}; call Types for the list`);

export const GenerateRequest = z.object({ type: IdTypeName });
export const GenerateResponse = z.object({
  id: z.string().describe('the unique id generated'),
  type: z.string().describe('the type of id generated'),
});

export const TypesRequest = z.object({});
export const TypesResponse = z.object({ types: z.array(z.string()) });

export const StreamRequest = z.object({
  type: IdTypeName,
  count: z.number().int().min(1).max(10000).default(10).describe('how many ids to send, 1 to 10000'),
});
