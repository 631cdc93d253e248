/**
 * @module platform/services/limits-schema
 * Wire schemas of project and key limits, shared by `projects/*`, `keys/*` and `usage/*`:
 * the same names as `prices.json`'s free tier, whole numbers, 0 for "no limit".
 */
import { z } from 'zod';
import { KEY_LIMIT_NAMES, LIMIT_NAMES, limitValue, type KeyLimitName, type LimitName } from '../limit-names.js';

export const ProjectLimits = z
  .object(Object.fromEntries(LIMIT_NAMES.map((name) => [name, limitValue(name)])) as Record<LimitName, z.ZodNumber>)
  .describe('the limits in force: the project\'s own where set, else the free tier\'s; 0 means no limit')
  .meta({ id: 'ProjectLimits' });

export const KeyLimits = z
  .object(Object.fromEntries(KEY_LIMIT_NAMES.map((name) => [name, limitValue(name)])) as Record<KeyLimitName, z.ZodNumber>)
  .describe("the key's own limits, on top of its project's; 0 means no limit")
  .meta({ id: 'KeyLimits' });

/** Optional limit fields for a create request: left out means "the default". */
export function limitFieldsForCreate<Name extends LimitName>(names: readonly Name[]): Record<Name, z.ZodOptional<z.ZodNumber>> {
  return Object.fromEntries(names.map((name) => [name, limitValue(name).optional()])) as Record<Name, z.ZodOptional<z.ZodNumber>>;
}

/** Limit fields for an update: left out keeps the limit, a number sets it, null clears it. */
export function limitFieldsForUpdate<Name extends LimitName>(
  names: readonly Name[],
  clearedMeans: string,
): Record<Name, z.ZodOptional<z.ZodNullable<z.ZodNumber>>> {
  return Object.fromEntries(
    names.map((name) => [
      name,
      limitValue(name)
        .nullable()
        .optional()
        .describe(`${limitValue(name).description}; null clears it (${clearedMeans}); left out keeps it`),
    ]),
  ) as Record<Name, z.ZodOptional<z.ZodNullable<z.ZodNumber>>>;
}

/** The limit fields a request carried, without the ones left out. */
export function pickLimits<Name extends LimitName>(
  request: Partial<Record<Name, number | null | undefined>>,
  names: readonly Name[],
): Partial<Record<Name, number | null>> {
  const changes: Partial<Record<Name, number | null>> = {};
  for (const name of names) {
    const value = request[name];
    if (value !== undefined) changes[name] = value;
  }
  return changes;
}
