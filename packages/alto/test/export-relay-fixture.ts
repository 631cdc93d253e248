/**
 * Helpers for the tests of exports relayed between the nodes of a cloud
 * (project-transfer-two-nodes*.e2e.test.ts): a project whose archive is a few hundred KiB, a
 * node's id and export spools, and the walk those tests share: a download from the node that
 * writes the export, cut part way, then described (`?info`) and finished (Range) through another
 * node, byte for byte as the writer serves it, and released (DELETE) through that node.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { download } from './download-fixture.js';
import { waitForAsync, type ServerProcess } from './harness.js';

export const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

export const nodeIdOf = (server: ServerProcess) => readFileSync(join(server.dataDir, 'node-id'), 'utf8').trim();

export const spoolFiles = (server: ServerProcess) => {
  const folder = join(server.dataDir, 'transfer');
  return existsSync(folder) ? readdirSync(folder).filter((name) => name.startsWith('export-')) : [];
};

/** Records that do not compress, written through `server`: the archive is a few hundred KiB, so a download can be cut part way. */
export async function fillProject(server: ServerProcess, project: string): Promise<void> {
  const key = await server.projectKey(project, ['db']);
  for (let index = 0; index < 40; index++) {
    const created = await server.call('db', 'Create', { table: 'entries', record: { id: `e${index}`, noise: randomBytes(6_000).toString('base64') } }, key);
    assert.equal(created.status, 200, JSON.stringify(created.body));
  }
}

/** A node as the test reaches it directly: over plain HTTP, or over HTTPS verified against `ca`. */
export interface DirectNode {
  server: ServerProcess;
  url: string;
  /** The roots its certificate is verified against (PEM), for an https: `url`. */
  ca?: string;
}

/** What the export's writer says of it (`?info`). */
export interface ExportInfo {
  id: string;
  project: string;
  state: string;
  size: number;
  sha256?: string;
}

export const exportUrl = (base: string, id: string) => `${base}/admin/projects/exports/${id}`;

/**
 * Exports `project` from `writer`, cuts the download after `cut` bytes, waits until `relay`
 * describes the export as complete and fetches the rest through `relay`: asserts the id names
 * the writer, the whole file is the archive it wrote (sha256), the relayed bytes are those the
 * writer serves from that offset, and nothing was spooled on `relay`. Returns the export's id
 * and its description.
 */
export async function resumeThroughRelay(writer: DirectNode, relay: ServerProcess, project: string, authorization: Record<string, string>, cut = 50_000): Promise<ExportInfo> {
  const direct = { ca: writer.ca };
  const started = await download(`${writer.url}/admin/projects/export?name=${project}`, authorization, { ...direct, keep: cut });
  assert.equal(started.status, 200, started.body.toString());
  assert.equal(started.body.length, cut);
  const id = String(started.headers['x-alto-export']);
  assert.equal(id.slice(0, id.lastIndexOf('.')), nodeIdOf(writer.server), 'the id names the node that wrote the export');
  assert.notEqual(nodeIdOf(writer.server), nodeIdOf(relay));

  // ?info through the relay: the writer's spool, as the writer describes it, once it is written whole.
  let info: ExportInfo | undefined;
  await waitForAsync(async () => {
    const described = await download(`${exportUrl(relay.url, id)}?info`, authorization);
    assert.equal(described.status, 200, described.body.toString());
    info = JSON.parse(described.body.toString()) as ExportInfo;
    return info.state === 'complete';
  }, 'the export to be complete, as the relaying node reports it');
  assert.equal(info!.id, id);
  assert.equal(info!.project, project);

  // The rest through the relay.
  const rest = await download(exportUrl(relay.url, id), { ...authorization, range: `bytes=${cut}-` });
  assert.equal(rest.status, 206, rest.body.toString());
  assert.equal(rest.headers['x-alto-export'], id);
  assert.equal(rest.headers['x-alto-offset'], String(cut));
  assert.equal(rest.headers['content-length'], String(info!.size - cut));
  assert.equal(rest.headers['content-range'], `bytes ${cut}-${info!.size - 1}/${info!.size}`);
  const resumed = Buffer.concat([started.body, rest.body]);
  assert.equal(resumed.length, info!.size);
  assert.equal(sha256(resumed), rest.headers['x-alto-export-sha256'], 'the whole file is the archive the writer wrote');
  assert.equal(sha256(resumed), info!.sha256);

  // The same bytes as the writer serves from that offset, and nothing spooled on the relay.
  const fromWriter = await download(exportUrl(writer.url, id), { ...authorization, range: `bytes=${cut}-` }, direct);
  assert.equal(fromWriter.status, 206);
  assert.ok(rest.body.equals(fromWriter.body), "the relay's bytes are the writer's archive from that offset");
  assert.deepEqual(spoolFiles(relay), []);
  assert.equal(spoolFiles(writer.server).length, 1);
  return info!;
}

/** DELETE of export `id` through `relay`: gone from the writer's disk, then not found through either node. */
export async function releaseThroughRelay(writer: DirectNode, relay: ServerProcess, id: string, authorization: Record<string, string>): Promise<void> {
  const released = await download(exportUrl(relay.url, id), authorization, { method: 'DELETE' });
  assert.equal(released.status, 204, released.body.toString());
  assert.deepEqual(spoolFiles(writer.server), []);
  assert.equal((await download(exportUrl(relay.url, id), authorization)).status, 404);
  assert.equal((await download(exportUrl(writer.url, id), authorization, { ca: writer.ca })).status, 404);
}
