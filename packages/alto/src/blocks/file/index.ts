/**
 * @module blocks/file
 * The `file` block: small text files by project and path. M3O-compatible `Save`, `Read`,
 * `List` (a folder) and `Delete`, plus paging and public permalinks at
 * `/files/{projectId}/{environment}/{project}/{path}`. Kept in a table (SQLite embedded,
 * PostgreSQL with `--store postgres://`), since List answers every file's content at once.
 */
import { parseBaseUrl } from '../../kit/public-url.js';
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import { Files } from './files.js';
import {
  DeleteRequest,
  DeleteResponse,
  ListRequest,
  ListResponse,
  ReadRequest,
  ReadResponse,
  SaveRequest,
  SaveResponse,
} from './schema.js';
import { filesRoute } from './serve.js';
import { fileSection } from './transfer.js';

const filesBlock = component('file.files', (platform) => {
  return new Files(platform.stores.files, parseBaseUrl(process.env.ALTO_PUBLIC_URL, 'ALTO_PUBLIC_URL'));
});

function use(context: CallContext): { files: Files; namespace: string } {
  return { files: context.platform.use(filesBlock), namespace: context.tenant.namespace };
}

export const fileService = defineService({
  name: 'file',
  description: 'Small text files by project and path: save, read, list a folder, delete; public ones at a permalink.',
  priceMicros: 5,
  components: [filesBlock],
  httpRoutes: [filesRoute(filesBlock)],
  endpoints: {
    Save: endpoint({
      description: 'Create or replace a text file (at most 1 MiB) with optional metadata; with `public: true` it is served at the returned permalink.',
      request: SaveRequest,
      response: SaveResponse,
      example: { file: { project: 'my-website', path: '/docs/readme.md', content: '# Hello' }, public: false },
      async handler(request, context) {
        const { files, namespace } = use(context);
        const record = await files.save(namespace, request.file, request.public);
        return { url: record.public ? files.permalink(namespace, record, context.origin) : '' };
      },
    }),
    Read: endpoint({
      description: 'Read a file by project and path.',
      request: ReadRequest,
      response: ReadResponse,
      example: { project: 'my-website', path: '/docs/readme.md' },
      async handler(request, context) {
        const { files, namespace } = use(context);
        return { file: files.view(await files.read(namespace, request.project, request.path)) };
      },
    }),
    List: endpoint({
      description: 'List the files of a project under a folder (default "/": all), sorted by path, with their contents.',
      request: ListRequest,
      response: ListResponse,
      example: { project: 'my-website', path: '/docs' },
      async handler(request, context) {
        const { files, namespace } = use(context);
        const page = await files.list(namespace, request.project, request.path, request.limit, request.startAfter);
        return { files: page.files.map((record) => files.view(record)), nextStartAfter: page.nextStartAfter };
      },
    }),
    Delete: endpoint({
      description: 'Delete a file by project and path. Deleting one that does not exist succeeds all the same.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { project: 'my-website', path: '/docs/readme.md' },
      async handler(request, context) {
        const { files, namespace } = use(context);
        await files.delete(namespace, request.project, request.path);
        return {};
      },
    }),
  },
  transfer: fileSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(filesBlock).store.deleteProject(projectId);
  },
});
