/**
 * Logs (shown when the instance has the `app` service): the output of an app or a function
 * (functions run as the app of their name) from its log on disk (app/Logs), filtered by text,
 * stream, instance and time; Follow streams new lines live over app/FollowLogs and stops when
 * turned off or the page is left; the view keeps at most MAX_LINES lines. Below, the last
 * build's log: app/BuildLogs for an app built from source, function/Logs for a function.
 * The route names what is shown: `#/logs?app=web` or `#/logs?function=hello`.
 */
import { useEffect, useLayoutEffect, useRef, useState, type FormEvent } from 'react';
import { ApiError } from '../api';
import { EnvironmentContext, EnvironmentPicker, useEnvironment, usePickedEnvironment } from '../environment';
import { useLoad, useRoute } from '../hooks';
import { useSession } from '../session';
import { Empty, ErrorNotice, Loading, PageHeader } from '../ui';

/** A line as app/Logs and app/FollowLogs answer it. */
interface LogLine {
  at: string;
  stream: 'stdout' | 'stderr' | 'system';
  line: string;
  instance: string;
  version: number;
}

interface BuildLogLine {
  at: string;
  line: string;
  done?: 'succeeded' | 'failed';
}

interface Filters {
  grep: string;
  stream: string;
  instance: string;
  since: string;
  until: string;
}

const NO_FILTERS: Filters = { grep: '', stream: '', instance: '', since: '', until: '' };
/** Lines the view holds at most; older ones give way as new ones come. */
export const MAX_LINES = 5_000;
/** Lines read when the view opens or its filters change. */
const READ_LINES = 500;

type Source = { kind: 'app' | 'function'; name: string };

function sourceOf(params: URLSearchParams): Source | undefined {
  const fn = params.get('function');
  if (fn) return { kind: 'function', name: fn };
  const app = params.get('app');
  return app ? { kind: 'app', name: app } : undefined;
}

/** The request fields of the filters: empty ones left out; `until` only for a read (a follow goes on). */
function filterFields(filters: Filters, following: boolean): Record<string, string> {
  const fields: Record<string, string> = {};
  const keys: (keyof Filters)[] = following ? ['grep', 'stream', 'instance', 'since'] : ['grep', 'stream', 'instance', 'since', 'until'];
  for (const key of keys) {
    const value = filters[key].trim();
    if (value) fields[key] = value;
  }
  return fields;
}

export function LogsPage() {
  const session = useSession();
  const env = useEnvironment();
  const { params } = useRoute();
  const source = sourceOf(params);
  const apps = useLoad(() => env.call<{ services: { name: string; instances: { id: string }[] }[] }>('app', 'List'), [env.call]);
  const functions = useLoad(
    () => (session.hasService('function') ? env.call<{ functions: { name: string }[] }>('function', 'List') : Promise.resolve({ functions: [] })),
    [env.call],
  );
  const functionNames = new Set(functions.data?.functions.map((fn) => fn.name) ?? []);
  // A function runs as the app of its name: it is listed once, as a function.
  const appNames = (apps.data?.services ?? []).map((app) => app.name).filter((name) => !functionNames.has(name));
  const instances = apps.data?.services.find((app) => app.name === source?.name)?.instances.map((instance) => instance.id) ?? [];

  const choose = (value: string) => {
    const [kind, name] = value.split(':');
    const inEnvironment = `env=${encodeURIComponent(env.environment)}`;
    location.hash = name ? `#/logs?${kind}=${encodeURIComponent(name)}&${inEnvironment}` : `#/logs?${inEnvironment}`;
  };

  return (
    <EnvironmentContext.Provider value={env}>
      <PageHeader title="Logs" description="The output of your apps and functions, kept on disk across restarts within each app's size cap and retention; Alto's own lines (starts, exits, restarts) are the system stream." />
      <EnvironmentPicker choice={env} />
      <div className="row filters">
        <label className="inline-field" htmlFor="logs-source">
          App or function
          <select id="logs-source" value={source ? `${source.kind}:${source.name}` : ''} onChange={(event) => choose(event.target.value)}>
            <option value="">Choose…</option>
            {appNames.length > 0 && (
              <optgroup label="Apps">
                {appNames.map((name) => (
                  <option key={name} value={`app:${name}`}>
                    {name}
                  </option>
                ))}
              </optgroup>
            )}
            {functionNames.size > 0 && (
              <optgroup label="Functions">
                {[...functionNames].map((name) => (
                  <option key={name} value={`function:${name}`}>
                    {name}
                  </option>
                ))}
              </optgroup>
            )}
            {source && !appNames.includes(source.name) && !functionNames.has(source.name) && <option value={`${source.kind}:${source.name}`}>{source.name}</option>}
          </select>
        </label>
      </div>
      <ErrorNotice error={apps.error} />
      <ErrorNotice error={functions.error} />
      {!source ? (
        apps.loading && !apps.data ? <Loading /> : <Empty>{appNames.length || functionNames.size ? 'Choose an app or a function to read its logs.' : 'No apps or functions yet.'}</Empty>
      ) : (
        <>
          <RuntimeLogs key={`${source.kind}:${source.name}`} name={source.name} instances={instances} />
          <BuildLog key={`build:${source.kind}:${source.name}`} source={source} />
        </>
      )}
    </EnvironmentContext.Provider>
  );
}

function RuntimeLogs({ name, instances }: { name: string; instances: string[] }) {
  const env = usePickedEnvironment();
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [follow, setFollow] = useState(false);
  const [live, setLive] = useState(false);
  const [lines, setLines] = useState<LogLine[]>([]);
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(true);
  const [round, setRound] = useState(0);

  // A read of the lines on disk when not following; a stream of them, then new ones, when following.
  useEffect(() => {
    setError(undefined);
    setLoading(true);
    const request = { name, lines: READ_LINES, ...filterFields(filters, follow) };
    if (!follow) {
      let current = true;
      env
        .call<{ lines: LogLine[] }>('app', 'Logs', request)
        .then((answer) => current && setLines(answer.lines.slice(-MAX_LINES)))
        .catch((failure: unknown) => current && setError(failure))
        .finally(() => current && setLoading(false));
      return () => {
        current = false;
      };
    }
    setLines([]);
    // Lines arrive one message each: they are gathered and added once per frame.
    let batch: LogLine[] = [];
    let frame = 0;
    const addBatch = () => {
      frame = 0;
      const added = batch;
      batch = [];
      setLines((current) => {
        const next = current.concat(added);
        return next.length > MAX_LINES ? next.slice(next.length - MAX_LINES) : next;
      });
    };
    const close = env.stream('app', 'FollowLogs', request, {
      onOpen: () => {
        setLive(true);
        setLoading(false);
      },
      onMessage: (message) => {
        batch.push(message as LogLine);
        frame ||= requestAnimationFrame(addBatch);
      },
      onError: (failure: ApiError) => setError(failure),
      onClose: () => {
        setLive(false);
        setLoading(false);
      },
    });
    return () => {
      if (frame) cancelAnimationFrame(frame);
      close();
      setLive(false);
    };
  }, [name, filters, follow, round, env.stream]);

  const apply = (event: FormEvent) => {
    event.preventDefault();
    setFilters({ ...draft });
  };
  const clear = () => {
    setDraft(NO_FILTERS);
    setFilters(NO_FILTERS);
  };

  return (
    <section className="card" aria-labelledby="runtime-logs-title">
      <div className="section-head">
        <h2 id="runtime-logs-title">Output of {name}</h2>
        <div className="row">
          <label className="checkbox">
            <input type="checkbox" role="switch" checked={follow} onChange={(event) => setFollow(event.target.checked)} /> Follow
          </label>
          <span className="muted small" role="status" data-testid="follow-status">
            <span className={`dot ${live ? 'dot-ok' : 'dot-off'}`} aria-hidden="true" /> {live ? 'following new lines' : follow ? 'connecting…' : 'not following'}
          </span>
          {!follow && (
            <button type="button" className="button-ghost small" onClick={() => setRound((value) => value + 1)} disabled={loading}>
              Refresh
            </button>
          )}
        </div>
      </div>
      <form className="row filters" aria-label="Log filters" onSubmit={apply}>
        <label className="inline-field" htmlFor="logs-grep">
          Text
          <input id="logs-grep" type="search" value={draft.grep} maxLength={256} placeholder="any" size={14} onChange={(event) => setDraft({ ...draft, grep: event.target.value })} />
        </label>
        <label className="inline-field" htmlFor="logs-stream">
          Stream
          <select id="logs-stream" value={draft.stream} onChange={(event) => setDraft({ ...draft, stream: event.target.value })}>
            <option value="">all</option>
            <option value="stdout">stdout</option>
            <option value="stderr">stderr</option>
            <option value="system">system (Alto)</option>
          </select>
        </label>
        <label className="inline-field" htmlFor="logs-instance">
          Instance
          <input id="logs-instance" list="logs-instances" value={draft.instance} placeholder="any" size={12} onChange={(event) => setDraft({ ...draft, instance: event.target.value })} />
          <datalist id="logs-instances">
            {instances.map((id) => (
              <option key={id} value={id} />
            ))}
          </datalist>
        </label>
        <label className="inline-field" htmlFor="logs-since" title="an RFC 3339 time, or a duration back from now: 30s, 10m, 2h, 7d">
          Since
          <input id="logs-since" value={draft.since} placeholder="10m or 2026-01-02T15:04:05Z" size={12} onChange={(event) => setDraft({ ...draft, since: event.target.value })} />
        </label>
        <label className="inline-field" htmlFor="logs-until" title="an RFC 3339 time, or a duration back from now; a follow goes on past it">
          Until
          <input id="logs-until" value={draft.until} placeholder="now" size={12} onChange={(event) => setDraft({ ...draft, until: event.target.value })} />
        </label>
        <button type="submit" className="button-secondary">
          Apply
        </button>
        <button type="button" className="button-ghost" onClick={clear}>
          Clear
        </button>
      </form>
      <ErrorNotice error={error} />
      {loading && lines.length === 0 ? (
        <Loading />
      ) : lines.length === 0 ? (
        !error && <Empty>{follow ? 'No lines yet: new ones show here as they are written.' : 'No lines match.'}</Empty>
      ) : (
        <LogTable lines={lines} follow={follow} />
      )}
      <p className="muted small">
        {lines.length} line{lines.length === 1 ? '' : 's'}
        {lines.length >= MAX_LINES ? ` (the newest ${MAX_LINES} kept)` : ''}
      </p>
    </section>
  );
}

function LogTable({ lines, follow }: { lines: LogLine[]; follow: boolean }) {
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  // While following, the view stays at the newest line unless it was scrolled up to read.
  useLayoutEffect(() => {
    const element = scroller.current;
    if (element && follow && atBottom.current) element.scrollTop = element.scrollHeight;
  }, [lines, follow]);
  return (
    <div
      className="table-wrap log-table"
      ref={scroller}
      tabIndex={0}
      aria-label="Log lines"
      onScroll={(event) => {
        const element = event.currentTarget;
        atBottom.current = element.scrollHeight - element.scrollTop - element.clientHeight < 40;
      }}
    >
      <table className="compact" data-testid="log-lines">
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Stream</th>
            <th scope="col">Instance</th>
            <th scope="col">Line</th>
          </tr>
        </thead>
        <tbody>
          {lines.map((line, index) => (
            <tr key={`${line.at}-${index}`} data-stream={line.stream}>
              <td className="mono nowrap" title={line.at}>
                {formatTime(line.at)}
              </td>
              <td className={`log-stream log-stream-${line.stream}`}>{line.stream}</td>
              <td className="mono" title={line.instance}>
                {line.instance.slice(0, 8) || '—'}
              </td>
              <td className="mono log-text">{line.line}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A line's time to the millisecond, in the browser's time zone. */
function formatTime(text: string): string {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return text;
  return `${date.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${date.toLocaleTimeString(undefined, { hour12: false })}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

/** The last build's log: app/BuildLogs (followed while the build runs) or function/Logs. */
function BuildLog({ source }: { source: Source }) {
  const env = usePickedEnvironment();
  const [open, setOpen] = useState(false);
  const [lines, setLines] = useState<BuildLogLine[]>([]);
  const [text, setText] = useState<string>();
  const [error, setError] = useState<unknown>();
  const [none, setNone] = useState(false);
  const [loading, setLoading] = useState(false);

  useEffect(() => {
    if (!open) return;
    setError(undefined);
    setNone(false);
    setLines([]);
    setText(undefined);
    setLoading(true);
    if (source.kind === 'function') {
      let current = true;
      env
        .call<{ logs: string }>('function', 'Logs', { name: source.name, logs_type: 'build' })
        .then((answer) => current && setText(answer.logs))
        .catch((failure: unknown) => current && setError(failure))
        .finally(() => current && setLoading(false));
      return () => {
        current = false;
      };
    }
    return env.stream('app', 'BuildLogs', { name: source.name }, {
      onMessage: (message) => {
        setLoading(false);
        setLines((current) => [...current, message as BuildLogLine].slice(-MAX_LINES));
      },
      onError: (failure) => (failure.status === 404 ? setNone(true) : setError(failure)),
      onClose: () => setLoading(false),
    });
  }, [open, source.kind, source.name, env.stream]);

  const shown = text ?? lines.map((line) => line.line).join('\n');
  const outcome = lines.at(-1)?.done;
  return (
    <section className="card" aria-labelledby="build-log-title">
      <div className="section-head">
        <h2 id="build-log-title">
          Last build {outcome && <span className={`status status-build-${outcome}`}>{outcome}</span>}
        </h2>
        <button type="button" className="button-secondary small" aria-expanded={open} onClick={() => setOpen(!open)}>
          {open ? 'Hide build log' : 'Show build log'}
        </button>
      </div>
      {open && (
        <>
          <ErrorNotice error={error} />
          {loading && !shown ? (
            <Loading />
          ) : none ? (
            <Empty>No build log: {source.name} runs an image it was given, not one built from source here.</Empty>
          ) : (
            !error && (
              <pre className="code-block log-block" aria-label={`Build log of ${source.name}`} data-testid="build-log">
                {shown || 'No build log.'}
              </pre>
            )
          )}
        </>
      )}
    </section>
  );
}
