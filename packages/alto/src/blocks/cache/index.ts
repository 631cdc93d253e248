/**
 * @module blocks/cache
 * The `cache` block: a key-value cache with expiry. M3O-compatible `Get`, `Set`, `Delete`,
 * `Increment`, `Decrement` and `ListKeys`, plus `prefix` on ListKeys and the bulk `GetMany` and
 * `SetMany`. Embedded SQLite by default; Redis when Alto runs with `--cache redis://...`.
 */
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import { CacheBlock } from './cache.js';
import {
  DecrementRequest,
  DecrementResponse,
  DeleteRequest,
  DeleteResponse,
  GetManyRequest,
  GetManyResponse,
  GetRequest,
  GetResponse,
  IncrementRequest,
  IncrementResponse,
  ListKeysRequest,
  ListKeysResponse,
  SetManyRequest,
  SetManyResponse,
  SetRequest,
  SetResponse,
} from './schema.js';

const cacheBlock = component('cache.store', (platform) => {
  const block = new CacheBlock(platform.stores.cache, platform.log.child({ block: 'cache' }));
  block.startPurging();
  return block;
});

function use(context: CallContext): { cache: CacheBlock; namespace: string } {
  return { cache: context.platform.use(cacheBlock), namespace: context.tenant.namespace };
}

export const cacheService = defineService({
  name: 'cache',
  description: 'A fast key-value cache with expiry and atomic counters.',
  priceMicros: 1,
  components: [cacheBlock],
  endpoints: {
    Get: endpoint({
      description: 'Get an item from the cache by key. If the key is not found, the value is empty.',
      request: GetRequest,
      response: GetResponse,
      example: { key: 'foo' },
      async handler(request, context) {
        const { cache, namespace } = use(context);
        return cache.get(namespace, request.key);
      },
    }),
    Set: endpoint({
      description: 'Set an item in the cache, with an optional time to live in seconds. Overwrites any existing value.',
      request: SetRequest,
      response: SetResponse,
      example: { key: 'foo', value: 'bar' },
      async handler(request, context) {
        const { cache, namespace } = use(context);
        await cache.set(namespace, request);
        return { status: 'ok' };
      },
    }),
    Delete: endpoint({
      description: 'Delete a value from the cache. If the key is not found, it succeeds all the same.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { key: 'foo' },
      async handler(request, context) {
        const { cache, namespace } = use(context);
        await cache.delete(namespace, request.key);
        return { status: 'ok' };
      },
    }),
    Increment: endpoint({
      description: 'Increment an integer value atomically. A missing key counts as 0. The expiry is kept.',
      request: IncrementRequest,
      response: IncrementResponse,
      example: { key: 'counter', value: 2 },
      async handler(request, context) {
        const { cache, namespace } = use(context);
        return { key: request.key, value: await cache.increment(namespace, request.key, request.value) };
      },
    }),
    Decrement: endpoint({
      description: 'Decrement an integer value atomically. A missing key counts as 0. The expiry is kept.',
      request: DecrementRequest,
      response: DecrementResponse,
      example: { key: 'counter', value: 2 },
      async handler(request, context) {
        const { cache, namespace } = use(context);
        return { key: request.key, value: await cache.increment(namespace, request.key, -request.value) };
      },
    }),
    ListKeys: endpoint({
      description: 'List the keys in the cache, sorted; with `prefix`, only those starting with it.',
      request: ListKeysRequest,
      response: ListKeysResponse,
      example: {},
      async handler(request, context) {
        const { cache, namespace } = use(context);
        return { keys: await cache.listKeys(namespace, request.prefix) };
      },
    }),
    GetMany: endpoint({
      description: 'Get several items at once; keys that do not exist are left out.',
      request: GetManyRequest,
      response: GetManyResponse,
      example: { keys: ['foo', 'counter'] },
      async handler(request, context) {
        const { cache, namespace } = use(context);
        return { items: await cache.getMany(namespace, request.keys) };
      },
    }),
    SetMany: endpoint({
      description: 'Set several items at once, each with its own time to live; all are written or none.',
      request: SetManyRequest,
      response: SetManyResponse,
      example: { items: [{ key: 'foo', value: 'bar' }, { key: 'session', value: 'abc', ttl: 3600 }] },
      async handler(request, context) {
        const { cache, namespace } = use(context);
        await cache.setMany(namespace, request.items);
        return { status: 'ok' };
      },
    }),
  },
  async deleteProjectData(projectId, platform) {
    await platform.use(cacheBlock).deleteProject(projectId);
  },
});
