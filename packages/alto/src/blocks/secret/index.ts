/**
 * @module blocks/secret
 * The `secret` block: small values (API keys, passwords) encrypted at rest with AES-256-GCM
 * under the server's master key, grouped by an optional folder-like `path`. Embedded SQLite by
 * default; PostgreSQL when Alto runs with `--store postgres://...`.
 */
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import {
  DeleteRequest,
  DeleteResponse,
  GetRequest,
  GetResponse,
  ListRequest,
  ListResponse,
  SetRequest,
  SetResponse,
} from './schema.js';
import { SecretBlock } from './secrets.js';
import { secretSection } from './transfer.js';

const secretBlock = component('secret.store', async (platform) => {
  const log = platform.log.child({ block: 'secret' });
  const { key: masterKey, cipher } = platform.masterKey(); // before anything is claimed: a bad key stops the start at once
  const store = platform.stores.secrets;
  const recorded = await store.claimKeyFingerprint(cipher.fingerprint());
  if (recorded !== cipher.fingerprint()) {
    const where = masterKey.source === 'ALTO_MASTER_KEY' ? 'ALTO_MASTER_KEY' : masterKey.path;
    throw new Error(
      `the master key from ${where} is not the key the stored secrets were encrypted with; ` +
        'start with the original key (ALTO_MASTER_KEY, or the master-key file from your backup)',
    );
  }
  log.info({ source: masterKey.source, path: masterKey.path, backend: store.backend }, 'secret: master key loaded');
  return new SecretBlock(store, cipher, log);
});

function use(context: CallContext): { secrets: SecretBlock; namespace: string } {
  return { secrets: context.platform.use(secretBlock), namespace: context.tenant.namespace };
}

export const secretService = defineService({
  name: 'secret',
  description: 'Keep secrets (API keys, passwords) encrypted at rest, grouped by folder-like paths.',
  priceMicros: 1,
  components: [secretBlock],
  endpoints: {
    Get: endpoint({
      description: 'Get a secret by key (and path). 404 when it does not exist.',
      request: GetRequest,
      response: GetResponse,
      example: { key: 'foo' },
      async handler(request, context) {
        const { secrets, namespace } = use(context);
        return secrets.get(namespace, request.path, request.key);
      },
    }),
    Set: endpoint({
      description: 'Set a secret. Overwrites any existing value at the same key and path.',
      request: SetRequest,
      response: SetResponse,
      example: { key: 'foo', value: 'bar' },
      async handler(request, context) {
        const { secrets, namespace } = use(context);
        await secrets.set(namespace, request.path, request.key, request.value);
        return {};
      },
    }),
    Delete: endpoint({
      description: 'Delete a secret. If it does not exist, it succeeds all the same.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { key: 'foo' },
      async handler(request, context) {
        const { secrets, namespace } = use(context);
        await secrets.delete(namespace, request.path, request.key);
        return {};
      },
    }),
    List: endpoint({
      description: 'List the keys at a path (default: the top level) and the paths beneath it.',
      request: ListRequest,
      response: ListResponse,
      example: {},
      async handler(request, context) {
        const { secrets, namespace } = use(context);
        return secrets.list(namespace, request.path);
      },
    }),
  },
  transfer: secretSection(secretBlock),
  async deleteProjectData(projectId, platform) {
    await platform.use(secretBlock).deleteProject(projectId);
  },
});
