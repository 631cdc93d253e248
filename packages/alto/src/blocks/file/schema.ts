/**
 * @module blocks/file/schema
 * The wire schema of the `file` block, compatible with M3O's `file` service (same endpoints,
 * field names and defaults: List's path "/"), plus `public` on each record and `limit` and
 * `startAfter` paging on List. Times are set by the server; `created` and `updated` sent in a
 * Save are ignored.
 */
import { z } from 'zod';

const Project = z.string({ error: 'expected a string, the project the file belongs to' }).describe('the group of files, e.g. "my-website"');
const Path = z.string({ error: 'expected a string, the path of the file' }).describe('the path of the file, e.g. "/docs/readme.md"');

export const FileRecord = z.object({
  project: z.string(),
  path: z.string(),
  content: z.string(),
  created: z.string().describe('when the file was first saved (RFC 3339)'),
  updated: z.string().describe('when it was last saved (RFC 3339)'),
  metadata: z.record(z.string(), z.string()),
  public: z.boolean().describe('whether the file is served at its permalink without a key (Alto addition)'),
});

export const SaveRequest = z.object({
  file: z.object(
    {
      project: Project,
      path: Path,
      content: z.string({ error: 'expected a string, the text of the file' }).default('').describe('the text of the file; at most 1 MiB'),
      metadata: z
        .record(z.string(), z.string({ error: 'expected a string: metadata values are text' }))
        .default({})
        .describe('string keys and values kept with the file'),
      created: z.string().optional().describe('ignored: the server sets it'),
      updated: z.string().optional().describe('ignored: the server sets it'),
    },
    { error: 'expected an object: the file to save, with project, path and content' },
  ),
  public: z.boolean({ error: 'expected true or false' }).default(false).describe('serve the file at a permalink without a key'),
});
export const SaveResponse = z.object({ url: z.string().describe('the permalink when the file is public; empty otherwise') });

export const ReadRequest = z.object({ project: Project, path: Path });
export const ReadResponse = z.object({ file: FileRecord });

export const ListRequest = z.object({
  project: Project,
  path: z.string({ error: 'expected a string, a folder such as "/docs"' }).default('/').describe('a folder: lists the files under it; default "/", every file'),
  limit: z
    .preprocess(
      (input) => (typeof input === 'string' && /^\s*\d+\s*$/.test(input) ? Number(input) : input),
      z.number({ error: 'expected an integer' }).int({ error: 'expected an integer' }).min(1, { error: 'expected 1 to 1000' }).max(1000, { error: 'expected 1 to 1000' }),
    )
    .default(1000)
    .describe('most files in the answer (Alto addition); default 1000'),
  startAfter: z.string({ error: 'expected a string' }).default('').describe('only paths after this one (Alto addition): the nextStartAfter of the previous page'),
});
export const ListResponse = z.object({
  files: z.array(FileRecord).describe('sorted by path'),
  nextStartAfter: z.string().describe('when more files follow, pass this as startAfter for the next page; empty on the last page'),
});

export const DeleteRequest = z.object({ project: Project, path: Path });
export const DeleteResponse = z.object({});
