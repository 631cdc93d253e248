/**
 * @module blocks/id
 * The `id` block: unique ids of many kinds. M3O-compatible `Generate` and `Types`, plus
 * `Stream`, which sends a batch of ids one websocket message at a time.
 */
import { errors } from '../../kit/errors.js';
import { component, defineService, endpoint, streamEndpoint } from '../../platform/service.js';
import { ID_TYPES, IdGenerator, type IdType } from './generate.js';
import { GenerateRequest, GenerateResponse, StreamRequest, TypesRequest, TypesResponse } from './schema.js';

const generator = component('id.generator', () => new IdGenerator());

function idType(name: string): IdType {
  if (!(ID_TYPES as readonly string[]).includes(name)) {
    throw errors.badRequest(`type: "${name}" is not an id type; use one of ${ID_TYPES.join(', ')}`);
  }
  return name as IdType;
}

export const idService = defineService({
  name: 'id',
  description: 'Generate unique ids: uuid, ulid, ksuid, nanoid, snowflake and more.',
  priceMicros: 1,
  components: [generator],
  endpoints: {
    Generate: endpoint({
      description: 'Generate a unique id. Defaults to uuid.',
      request: GenerateRequest,
      response: GenerateResponse,
      example: { type: 'uuid' },
      handler(request, context) {
        const type = idType(request.type);
        return { id: context.platform.use(generator).generate(type), type };
      },
    }),
    Types: endpoint({
      description: 'List the types of ids available.',
      request: TypesRequest,
      response: TypesResponse,
      example: {},
      handler() {
        return { types: [...ID_TYPES] };
      },
    }),
    Stream: streamEndpoint({
      description: 'Stream `count` ids of one type, one message each (websocket).',
      request: StreamRequest,
      response: GenerateResponse,
      example: { type: 'ulid', count: 3 },
      async *handler(request, context) {
        const type = idType(request.type);
        const ids = context.platform.use(generator);
        for (let i = 0; i < request.count && !context.signal.aborted; i++) {
          yield { id: ids.generate(type), type };
        }
      },
    }),
  },
});
