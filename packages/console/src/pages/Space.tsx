/**
 * The space browser: objects listed by prefix with "/" as folders, upload (space/Upload gives a
 * presigned URL the file is PUT to), download (space/Download gives a presigned URL), delete.
 */
import { useRef, useState } from 'react';
import { useAction, useLoad, useRoute } from '../hooks';
import { useSession } from '../session';
import { ConfirmButton, Empty, ErrorNotice, formatBytes, formatDate, Loading, PageHeader } from '../ui';

interface SpaceObject {
  name: string;
  modified: string;
  visibility: string;
  size: number;
  contentType: string;
  url: string;
}

const PAGE = 200;

export function SpacePage() {
  const session = useSession();
  const { params } = useRoute();
  const prefix = params.get('prefix') ?? '';
  const [pages, setPages] = useState(1);
  const [visibility, setVisibility] = useState<'private' | 'public'>('private');
  const [progress, setProgress] = useState<string>();
  const fileInput = useRef<HTMLInputElement>(null);
  const [folder, setFolder] = useState('');

  const listing = useLoad(async () => {
    const objects: SpaceObject[] = [];
    let startAfter = '';
    let more = false;
    for (let page = 0; page < pages; page++) {
      const answer = await session.call<{ objects: SpaceObject[]; nextStartAfter: string }>('space', 'List', { prefix, limit: PAGE, startAfter });
      objects.push(...answer.objects);
      startAfter = answer.nextStartAfter;
      more = Boolean(startAfter);
      if (!more) break;
    }
    return { objects, more };
  }, [prefix, pages, session.key]);

  const { folders, files } = splitListing(listing.data?.objects ?? [], prefix);

  const upload = useAction(async (list: FileList) => {
    for (const file of Array.from(list)) {
      setProgress(`Uploading ${file.name} (${formatBytes(file.size)})…`);
      const { url } = await session.call<{ url: string }>('space', 'Upload', { name: prefix + file.name, visibility });
      const response = await fetch(url, { method: 'PUT', body: file, headers: { 'content-type': file.type || 'application/octet-stream' } });
      if (!response.ok) {
        const text = await response.text();
        let detail = text;
        try {
          detail = (JSON.parse(text) as { detail?: string }).detail ?? text;
        } catch {
          // plain text
        }
        throw new Error(`upload of ${file.name} failed (${response.status}): ${detail}`);
      }
    }
    setProgress(undefined);
    listing.reload();
    return true;
  });

  const download = useAction(async (name: string) => {
    const { url } = await session.call<{ url: string }>('space', 'Download', { name });
    const link = document.createElement('a');
    link.href = url;
    link.download = name.split('/').pop() ?? name;
    document.body.append(link);
    link.click();
    link.remove();
  });
  const remove = useAction((name: string) => session.call('space', 'Delete', { name }));

  const crumbs = prefix.split('/').filter(Boolean);

  return (
    <>
      <PageHeader
        title="Space"
        description={
          <>
            Objects of project <strong>{session.status.key.project}</strong> ({session.status.key.environment}); “/” in a name makes folders.
          </>
        }
      />
      <section className="card" aria-labelledby="space-title">
        <div className="section-head">
          <nav aria-label="Folder" className="breadcrumbs">
            <h2 id="space-title" className="visually-hidden">
              Objects
            </h2>
            <ol>
              <li>
                <a href="#/space" aria-current={prefix === '' ? 'page' : undefined}>
                  space
                </a>
              </li>
              {crumbs.map((crumb, index) => {
                const target = crumbs.slice(0, index + 1).join('/') + '/';
                return (
                  <li key={target}>
                    <a href={`#/space?prefix=${encodeURIComponent(target)}`} aria-current={target === prefix ? 'page' : undefined}>
                      {crumb}
                    </a>
                  </li>
                );
              })}
            </ol>
          </nav>
          <div className="row">
            <label className="inline-field" htmlFor="upload-visibility">
              Visibility
              <select id="upload-visibility" value={visibility} onChange={(event) => setVisibility(event.target.value as 'private' | 'public')}>
                <option value="private">private</option>
                <option value="public">public</option>
              </select>
            </label>
            <form
              className="row"
              aria-label="Open a folder"
              onSubmit={(event) => {
                event.preventDefault();
                const name = folder.trim().replace(/^\/+|\/+$/g, '');
                if (!name) return;
                setFolder('');
                location.hash = `#/space?prefix=${encodeURIComponent(prefix + name + '/')}`;
              }}
            >
              <label htmlFor="space-folder" className="visually-hidden">
                Folder name
              </label>
              <input id="space-folder" className="folder-input" placeholder="folder" value={folder} onChange={(event) => setFolder(event.target.value)} />
              <button type="submit" className="button-secondary">
                Open folder
              </button>
            </form>
            <input
              ref={fileInput}
              id="upload-file"
              type="file"
              multiple
              className="visually-hidden"
              onChange={(event) => {
                if (event.target.files?.length) void upload.run(event.target.files).finally(() => (event.target.value = ''));
              }}
            />
            <button type="button" className="button-primary" onClick={() => fileInput.current?.click()} disabled={upload.busy}>
              {upload.busy ? 'Uploading…' : 'Upload files'}
            </button>
          </div>
        </div>
        {progress && upload.busy && <Loading label={progress} />}
        <ErrorNotice error={upload.error} onDismiss={upload.clearError} />
        <ErrorNotice error={listing.error} />
        <ErrorNotice error={download.error} onDismiss={download.clearError} />
        <ErrorNotice error={remove.error} onDismiss={remove.clearError} />
        {listing.loading && !listing.data ? (
          <Loading />
        ) : folders.length === 0 && files.length === 0 ? (
          <Empty>{prefix ? 'This folder is empty: files uploaded now go into it.' : 'No objects yet. Upload a file to start.'}</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Size</th>
                  <th scope="col">Type</th>
                  <th scope="col">Modified</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {folders.map((folder) => (
                  <tr key={folder}>
                    <th scope="row" colSpan={5}>
                      <a href={`#/space?prefix=${encodeURIComponent(prefix + folder + '/')}`}>
                        <span aria-hidden="true">📁 </span>
                        {folder}/
                      </a>
                    </th>
                  </tr>
                ))}
                {files.map((object) => (
                  <tr key={object.name} data-object={object.name}>
                    <th scope="row">
                      {object.name.slice(prefix.length)}
                      {object.visibility === 'public' && <span className="tag tag-small">public</span>}
                    </th>
                    <td>{formatBytes(object.size)}</td>
                    <td className="muted">{object.contentType}</td>
                    <td>{formatDate(object.modified)}</td>
                    <td className="actions">
                      <button type="button" className="button-secondary small" onClick={() => download.run(object.name)} aria-label={`Download ${object.name}`}>
                        Download
                      </button>
                      <ConfirmButton
                        label="Delete"
                        confirmLabel={`Delete ${object.name.slice(prefix.length)}`}
                        busy={remove.busy}
                        onConfirm={async () => {
                          await remove.run(object.name);
                          listing.reload();
                        }}
                      />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {listing.data?.more && (
          <button type="button" className="button-secondary" onClick={() => setPages((count) => count + 1)} disabled={listing.loading}>
            Load more
          </button>
        )}
      </section>
    </>
  );
}

/** Objects directly in the folder, and the sub-folders (the first "/" segment after the prefix). */
function splitListing(objects: SpaceObject[], prefix: string): { folders: string[]; files: SpaceObject[] } {
  const folders = new Set<string>();
  const files: SpaceObject[] = [];
  for (const object of objects) {
    const rest = object.name.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash >= 0) folders.add(rest.slice(0, slash));
    else files.push(object);
  }
  return { folders: [...folders].sort(), files };
}
