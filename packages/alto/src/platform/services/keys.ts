/**
 * @module platform/services/keys
 * `keys/*`: generate scoped API keys (shown once), list them, change their limits, revoke,
 * block and unblock them.
 */
import { z } from 'zod';
import { errors } from '../../kit/errors.js';
import type { KeyRecord } from '../../store/control.js';
import { KEY_LIMIT_NAMES } from '../limit-names.js';
import type { Platform } from '../platform.js';
import { defineService, endpoint } from '../service.js';
import { KeyLimits, limitFieldsForCreate, limitFieldsForUpdate, pickLimits } from './limits-schema.js';

export const KeyInfo = z
  .object({
    id: z.string(),
    project: z.string(),
    environment: z.string(),
    scopes: z.array(z.string()),
    description: z.string(),
    role: z.enum(['admin', 'owner', 'project']),
    status: z.enum(['active', 'blocked', 'revoked']),
    prefix: z.string().describe('the first characters of the key, to tell keys apart; empty for a key whose text the operator chose (ALTO_ADMIN_KEY)'),
    created: z.string().describe('creation time, RFC 3339'),
    limits: KeyLimits,
  })
  .meta({ id: 'KeyInfo' });

async function keyView(key: KeyRecord, projectName: string, platform: Platform): Promise<z.infer<typeof KeyInfo>> {
  return {
    id: key.id,
    project: projectName,
    environment: key.environment,
    scopes: key.scopes,
    description: key.description,
    role: key.role,
    status: key.status,
    prefix: key.prefix,
    created: new Date(key.createdAt).toISOString(),
    limits: await platform.limits.keyLimits(key.id),
  };
}

const KeyId = z.object({ id: z.string().min(1).describe('the key id from keys/Generate or keys/List') });

export const keysService = defineService({
  name: 'keys',
  description: 'API keys: each belongs to one project and environment and may call only the services in its scopes.',
  priceMicros: 0,
  endpoints: {
    Generate: endpoint({
      description: 'Generate an API key. The key is returned once and only its hash is stored.',
      access: 'manage',
      request: z.object({
        project: z.string().min(1).describe('project name'),
        scopes: z.array(z.string()).default(['*']).describe('service names the key may call, or "*" for all'),
        description: z.string().max(500).default(''),
        environment: z.string().default('dev').describe('environment within the project, e.g. dev or prod'),
        ...limitFieldsForCreate(KEY_LIMIT_NAMES),
      }),
      response: z.object({ key: z.string().describe('the API key; store it now, it is not shown again'), info: KeyInfo }),
      example: { project: 'default', scopes: ['id', 'db'], description: 'backend server', rate_limit: 10 },
      async handler(request, context) {
        const generated = await context.platform.tenancy.generateKey(context.tenant, {
          projectName: request.project,
          environment: request.environment,
          scopes: request.scopes,
          description: request.description,
        });
        const limits = pickLimits(request, KEY_LIMIT_NAMES);
        if (Object.keys(limits).length > 0) await context.platform.limits.updateKeyLimits(generated.record.id, limits);
        return { key: generated.secret, info: await keyView(generated.record, request.project, context.platform) };
      },
    }),
    Update: endpoint({
      description:
        "Change a key's limits (on top of its project's): a number sets a limit (0 = none), null clears it, a field left out keeps it.",
      access: 'manage',
      request: KeyId.extend(limitFieldsForUpdate(KEY_LIMIT_NAMES, 'only the project\'s limits apply')),
      response: z.object({ info: KeyInfo }),
      example: { id: '4f9c1e7a-2b1d-4d0e-9a51-0c8f6b2d3e11', rate_limit: 20, monthly_quota: 100000 },
      async handler(request, context) {
        const key = await context.platform.tenancy.findKey(context.tenant, request.id);
        if (key.status === 'revoked') throw errors.conflict(`key "${key.id}" is revoked; its limits no longer matter`);
        await context.platform.limits.updateKeyLimits(key.id, pickLimits(request, KEY_LIMIT_NAMES));
        return { info: await keyView(key, key.projectName, context.platform) };
      },
    }),
    List: endpoint({
      description: "List a project's keys (never the keys themselves).",
      access: 'manage',
      request: z.object({ project: z.string().min(1).describe('project name') }),
      response: z.object({ keys: z.array(KeyInfo) }),
      example: { project: 'default' },
      async handler(request, context) {
        const keys = await context.platform.tenancy.listKeys(context.tenant, request.project);
        return { keys: await Promise.all(keys.map((key) => keyView(key, request.project, context.platform))) };
      },
    }),
    Revoke: endpoint({
      description: 'Revoke a key for good; it is refused from the next request on.',
      access: 'manage',
      request: KeyId,
      response: z.object({}),
      example: { id: '4f9c1e7a-2b1d-4d0e-9a51-0c8f6b2d3e11' },
      async handler(request, context) {
        await context.platform.tenancy.setKeyStatus(context.tenant, request.id, 'revoked');
        return {};
      },
    }),
    Block: endpoint({
      description: 'Block a key until it is unblocked.',
      access: 'manage',
      request: KeyId,
      response: z.object({}),
      example: { id: '4f9c1e7a-2b1d-4d0e-9a51-0c8f6b2d3e11' },
      async handler(request, context) {
        await context.platform.tenancy.setKeyStatus(context.tenant, request.id, 'blocked');
        return {};
      },
    }),
    Unblock: endpoint({
      description: 'Unblock a blocked key.',
      access: 'manage',
      request: KeyId,
      response: z.object({}),
      example: { id: '4f9c1e7a-2b1d-4d0e-9a51-0c8f6b2d3e11' },
      async handler(request, context) {
        await context.platform.tenancy.setKeyStatus(context.tenant, request.id, 'active');
        return {};
      },
    }),
  },
});
