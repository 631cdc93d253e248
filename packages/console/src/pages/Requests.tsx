/**
 * The request log of a project (logs/Read): every API call and app request through the edge,
 * newest first, with its time, method, path (no query string), status, duration, bytes, key
 * prefix or client address and request id. Filters by time, kind, app, status (404, or 5xx) and
 * path prefix; refreshes on its own every few seconds while that is on; older pages by cursor.
 */
import { useEffect, useState } from 'react';
import { useLoad } from '../hooks';
import { useSession } from '../session';
import { Empty, ErrorNotice, formatNumber, Loading, PageHeader } from '../ui';
import type { ProjectView } from './Projects';

interface RequestEntry {
  time: string;
  kind: 'api' | 'app';
  method: string;
  path: string;
  status: number;
  duration_ms: number;
  bytes_in: number;
  bytes_out: number;
  key_prefix?: string;
  client_address?: string;
  request_id?: string;
  app?: string;
}

interface ReadAnswer {
  project: string;
  requests: RequestEntry[];
  cursor?: string;
}

/** How often the page reads the log again while auto-refresh is on. */
const REFRESH_EVERY_MS = 5000;
const PAGE_SIZE = 100;

const SINCE_CHOICES = [
  { value: '15m', label: 'Last 15 minutes' },
  { value: '1h', label: 'Last hour' },
  { value: '24h', label: 'Last 24 hours' },
  { value: '7d', label: 'Last 7 days' },
  { value: '', label: 'All kept' },
];

function statusClass(status: number): string {
  return status >= 400 ? 'bad' : 'ok';
}

function timeOf(text: string): string {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

export function RequestsPage() {
  const session = useSession();
  const [project, setProject] = useState(session.status.key.project);
  const [since, setSince] = useState('1h');
  const [kind, setKind] = useState('');
  const [app, setApp] = useState('');
  const [status, setStatus] = useState('');
  const [path, setPath] = useState('');
  /** Text fields apply when submitted, not at every key press. */
  const [applied, setApplied] = useState({ app: '', status: '', path: '' });
  const [autoRefresh, setAutoRefresh] = useState(true);
  const [older, setOlder] = useState<{ requests: RequestEntry[]; cursor?: string; error?: unknown; loading: boolean }>({ requests: [], loading: false });

  const projects = useLoad(
    async () => (session.canManage ? (await session.call<{ projects: ProjectView[] }>('projects', 'List')).projects.map((entry) => entry.name) : [session.status.key.project]),
    [session.key],
  );
  const query = () => {
    const body: Record<string, unknown> = { project, limit: PAGE_SIZE };
    if (since) body.since = since;
    if (kind) body.kind = kind;
    if (applied.app) body.app = applied.app;
    if (applied.status) body.status = applied.status;
    if (applied.path) body.path = applied.path;
    return body;
  };
  const log = useLoad(() => session.call<ReadAnswer>('logs', 'Read', query()), [project, since, kind, applied, session.key]);

  useEffect(() => {
    const names = projects.data ?? [];
    if (names.length && !names.includes(project)) setProject(names[0]);
  }, [projects.data, project]);

  // A new first page (other filters, or a refresh) starts the older pages again.
  useEffect(() => setOlder({ requests: [], loading: false }), [log.data]);

  useEffect(() => {
    if (!autoRefresh) return;
    const timer = setInterval(() => {
      // Not while reading further back: the pages shown would no longer follow each other.
      if (document.visibilityState === 'visible' && older.requests.length === 0) log.reload();
    }, REFRESH_EVERY_MS);
    return () => clearInterval(timer);
  }, [autoRefresh, log.reload, older.requests.length]);

  const loadOlder = async () => {
    const cursor = older.requests.length ? older.cursor : log.data?.cursor;
    if (!cursor) return;
    setOlder((state) => ({ ...state, loading: true, error: undefined }));
    try {
      const page = await session.call<ReadAnswer>('logs', 'Read', { ...query(), cursor });
      setOlder((state) => ({ requests: [...state.requests, ...page.requests], cursor: page.cursor, loading: false }));
    } catch (error) {
      setOlder((state) => ({ ...state, loading: false, error }));
    }
  };

  const requests = [...(log.data?.requests ?? []), ...older.requests];
  const more = older.requests.length ? older.cursor : log.data?.cursor;
  return (
    <>
      <PageHeader
        title="Requests"
        description="Every API call and app request of the project through the edge, newest first. Query strings are never kept; how many days the log keeps is the project's request_log_days."
        actions={
          <>
            <label className="inline-field" htmlFor="requests-auto">
              <input id="requests-auto" type="checkbox" checked={autoRefresh} onChange={(event) => setAutoRefresh(event.target.checked)} />
              Auto-refresh
            </label>
            <button type="button" className="button-secondary" onClick={log.reload} disabled={log.loading}>
              {log.loading ? 'Refreshing…' : 'Refresh'}
            </button>
          </>
        }
      />
      <form
        className="row filters"
        aria-label="Filters"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied({ app: app.trim(), status: status.trim(), path: path.trim() });
        }}
      >
        <label className="inline-field" htmlFor="requests-project">
          Project
          <select id="requests-project" value={project} onChange={(event) => setProject(event.target.value)} disabled={!session.canManage}>
            {(projects.data ?? [project]).map((name) => (
              <option key={name}>{name}</option>
            ))}
          </select>
        </label>
        <label className="inline-field" htmlFor="requests-since">
          Time
          <select id="requests-since" value={since} onChange={(event) => setSince(event.target.value)}>
            {SINCE_CHOICES.map((choice) => (
              <option key={choice.value} value={choice.value}>
                {choice.label}
              </option>
            ))}
          </select>
        </label>
        <label className="inline-field" htmlFor="requests-kind">
          Kind
          <select id="requests-kind" value={kind} onChange={(event) => setKind(event.target.value)}>
            <option value="">API calls and app requests</option>
            <option value="api">API calls</option>
            <option value="app">App requests</option>
          </select>
        </label>
        <label className="inline-field" htmlFor="requests-app">
          App
          <input id="requests-app" value={app} placeholder="any" size={10} onChange={(event) => setApp(event.target.value)} />
        </label>
        <label className="inline-field" htmlFor="requests-status">
          Status
          <input id="requests-status" value={status} placeholder="404 or 5xx" size={8} onChange={(event) => setStatus(event.target.value)} />
        </label>
        <label className="inline-field" htmlFor="requests-path">
          Path prefix
          <input id="requests-path" value={path} placeholder="/v1/db/" size={14} onChange={(event) => setPath(event.target.value)} />
        </label>
        <button type="submit" className="button-secondary">
          Apply
        </button>
      </form>
      <ErrorNotice error={projects.error} />
      <ErrorNotice error={log.error} />
      {log.loading && !log.data ? (
        <Loading />
      ) : requests.length === 0 ? (
        !log.error && <Empty>No requests match.</Empty>
      ) : (
        <section className="card" aria-labelledby="requests-title">
          <h2 id="requests-title" className="visually-hidden">
            Requests
          </h2>
          <div className="table-wrap">
            <table className="compact" data-testid="requests-table">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Method</th>
                  <th scope="col">Path</th>
                  <th scope="col" className="number">
                    Status
                  </th>
                  <th scope="col" className="number">
                    Duration
                  </th>
                  <th scope="col" className="number">
                    In / out
                  </th>
                  <th scope="col">Key or client</th>
                  <th scope="col">Request id</th>
                </tr>
              </thead>
              <tbody>
                {requests.map((entry, index) => (
                  <tr key={`${entry.time}-${entry.request_id ?? ''}-${index}`} data-kind={entry.kind}>
                    <td className="nowrap">{timeOf(entry.time)}</td>
                    <td>{entry.kind === 'app' ? `app ${entry.app ?? ''}` : 'api'}</td>
                    <td>{entry.method}</td>
                    <td>
                      <code>{entry.path}</code>
                    </td>
                    <td className="number">
                      <span className={`status-code ${statusClass(entry.status)}`}>{entry.status}</span>
                    </td>
                    <td className="number">{entry.duration_ms.toFixed(1)} ms</td>
                    <td className="number nowrap">
                      {formatNumber(entry.bytes_in)} / {formatNumber(entry.bytes_out)}
                    </td>
                    <td>
                      <code>{entry.kind === 'api' ? (entry.key_prefix ?? '—') : (entry.client_address ?? '—')}</code>
                    </td>
                    <td className="muted small">{entry.request_id ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <ErrorNotice error={older.error} />
          {more && (
            <button type="button" className="button-secondary" onClick={loadOlder} disabled={older.loading}>
              {older.loading ? 'Loading…' : 'Older requests'}
            </button>
          )}
        </section>
      )}
    </>
  );
}
