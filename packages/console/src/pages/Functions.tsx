/**
 * Functions (shown only when the instance has the `function` service): the project's functions
 * with their status, runtime and address (function/List), a deploy form for inline source
 * (function/Deploy), and per function: a call with a JSON body (function/Call), its runtime and
 * build logs (function/Logs, polled), a new version of its source (function/Update), and delete.
 */
import { useEffect, useId, useState, type FormEvent } from 'react';
import { useAction, useLoad } from '../hooks';
import { useSession } from '../session';
import { EnvironmentContext, EnvironmentPicker, useEnvironment, usePickedEnvironment } from '../environment';
import { ConfirmButton, Empty, ErrorNotice, Field, formatDate, JsonEditor, Loading, PageHeader, parseEnv, parseJson } from '../ui';

/** A function as function/List and function/Describe answer it (M3O's Func). */
interface FunctionView {
  id: string;
  name: string;
  runtime: string;
  entrypoint: string;
  source: string;
  repo: string;
  branch: string;
  subfolder: string;
  env_vars: Record<string, string>;
  status: string;
  url: string;
  image: string;
  version: number;
  created: string;
  updated: string;
}

/** What a new function starts from: a default export that takes a Request, as Deploy expects. */
const EXAMPLE_SOURCE = `// Called over HTTP at its address, and by function/Call with a JSON body.
export default async function (request: Request): Promise<Response> {
  const body: { name?: string } = request.method === 'POST' ? await request.json().catch(() => ({})) : {};
  const name = body.name ?? new URL(request.url).searchParams.get('name') ?? 'world';
  console.log(\`said hello to \${name}\`);
  return Response.json({ hello: name });
}
`;

const POLL_MS = 2000;

/** The colours of the apps' states, for the function statuses they stand behind. */
const STATUS_CLASS: Record<string, string> = {
  ACTIVE: 'status-app-running',
  DEPLOY_IN_PROGRESS: 'status-app-deploying',
  ERROR: 'status-app-failed',
  OFFLINE: 'status-revoked',
};

export function FunctionsPage() {
  const session = useSession();
  const env = useEnvironment();
  const functions = useLoad(() => env.call<{ functions: FunctionView[] }>('function', 'List'), [session.key, env.environment]);

  // While a function is being built or moved to a new version, follow its status.
  const settling = functions.data?.functions.some((entry) => entry.status === 'DEPLOY_IN_PROGRESS');
  useEffect(() => {
    if (!settling) return;
    const timer = setInterval(functions.reload, POLL_MS);
    return () => clearInterval(timer);
  }, [settling, functions.reload]);

  return (
    <EnvironmentContext.Provider value={env}>
      <PageHeader
        title="Functions"
        description="JavaScript or TypeScript handlers, bundled over Alto's Node.js runtime and run as apps, each at its own address."
      />
      <EnvironmentPicker choice={env} />
      <Deploy onDeployed={functions.reload} />
      <section className="card" aria-labelledby="functions-title">
        <div className="section-head">
          <h2 id="functions-title">Functions</h2>
          <button type="button" className="button-ghost small" onClick={functions.reload} disabled={functions.loading}>
            Refresh
          </button>
        </div>
        <ErrorNotice error={functions.error} />
        {functions.loading && !functions.data ? (
          <Loading />
        ) : !functions.data?.functions.length ? (
          <Empty>No functions yet. Deploy one above.</Empty>
        ) : (
          <ul className="job-list">
            {functions.data.functions.map((entry) => (
              <FunctionItem key={entry.id} fn={entry} onChanged={functions.reload} />
            ))}
          </ul>
        )}
      </section>
    </EnvironmentContext.Provider>
  );
}

type Panel = 'call' | 'logs' | 'update';

const PANEL_LABELS: Record<Panel, [open: string, close: string]> = {
  call: ['Call', 'Hide call'],
  logs: ['Logs', 'Hide logs'],
  update: ['Edit source', 'Hide source'],
};

function FunctionItem({ fn, onChanged }: { fn: FunctionView; onChanged: () => void }) {
  const env = usePickedEnvironment();
  const [panel, setPanel] = useState<Panel>();
  const remove = useAction(() => env.call('function', 'Delete', { name: fn.name }));
  const panelId = useId();
  const origin = fn.repo ? `${fn.repo}${fn.branch ? ` (${fn.branch})` : ''}${fn.subfolder ? ` / ${fn.subfolder}` : ''}` : fn.source ? 'inline source' : 'uploaded folder';
  const envNames = Object.keys(fn.env_vars);
  return (
    <li className="job" data-function={fn.name}>
      <div className="section-head">
        <div>
          <h3>
            {fn.name} <span className={`status ${STATUS_CLASS[fn.status] ?? 'status-app-deploying'}`}>{fn.status}</span>
          </h3>
          <p className="muted small">
            {fn.runtime} · {origin}
            {fn.entrypoint && (
              <>
                {' '}
                · entrypoint <code>{fn.entrypoint}</code>
              </>
            )}{' '}
            · v{fn.version} · updated {formatDate(fn.updated)}
          </p>
          {envNames.length > 0 && <p className="muted small">env: {envNames.join(', ')}</p>}
          {fn.url && (
            <p className="small">
              <a href={fn.url} target="_blank" rel="noreferrer">
                {fn.url}
              </a>
            </p>
          )}
        </div>
        <div className="row">
          {(Object.keys(PANEL_LABELS) as Panel[]).map((name) => (
            <button
              key={name}
              type="button"
              className="button-secondary small"
              aria-expanded={panel === name}
              aria-controls={panel === name ? panelId : undefined}
              onClick={() => setPanel(panel === name ? undefined : name)}
            >
              {PANEL_LABELS[name][panel === name ? 1 : 0]}
            </button>
          ))}
          <ConfirmButton
            label="Delete"
            confirmLabel={`Delete ${fn.name}`}
            busy={remove.busy}
            onConfirm={async () => {
              await remove.run();
              onChanged();
            }}
          />
        </div>
      </div>
      <ErrorNotice error={remove.error} onDismiss={remove.clearError} />
      <div id={panelId}>
        {panel === 'call' && <CallPanel name={fn.name} />}
        {panel === 'logs' && <LogsPanel name={fn.name} />}
        {panel === 'update' && (
          <UpdatePanel
            fn={fn}
            onUpdated={() => {
              setPanel(undefined);
              onChanged();
            }}
          />
        )}
      </div>
    </li>
  );
}

/** function/Call: the JSON body in, the function's JSON answer out. */
function CallPanel({ name }: { name: string }) {
  const env = usePickedEnvironment();
  const [body, setBody] = useState('{\n  "name": "Alto"\n}');
  const [answer, setAnswer] = useState<{ response: unknown; ms: number }>();
  const call = useAction(async (request: unknown) => {
    const started = performance.now();
    const result = await env.call<{ response: unknown }>('function', 'Call', { name, request });
    setAnswer({ response: result.response, ms: performance.now() - started });
    return result;
  });
  const parsed = parseJson(body);
  async function submit(event: FormEvent) {
    event.preventDefault();
    if (parsed.error) return;
    setAnswer(undefined);
    await call.run(parsed.value);
  }
  return (
    <form className="row-editor" onSubmit={submit} aria-label={`Call ${name}`}>
      <JsonEditor id={`call-body-${name}`} label="Request body (JSON)" value={body} onChange={setBody} rows={4} />
      <button type="submit" className="button-primary small" disabled={call.busy || Boolean(parsed.error)}>
        {call.busy ? 'Calling…' : `Call ${name}`}
      </button>
      <div aria-live="polite">
        <ErrorNotice error={call.error} onDismiss={call.clearError} />
        {answer && (
          <>
            <p className="response-meta small">
              <span className="muted">answered in {answer.ms.toFixed(0)} ms</span>
            </p>
            <pre className="code-block" aria-label={`Answer of ${name}`} data-testid="function-response">
              {typeof answer.response === 'string' ? answer.response : JSON.stringify(answer.response, null, 2)}
            </pre>
          </>
        )}
      </div>
    </form>
  );
}

type LogsType = 'runtime' | 'build';

/** function/Logs, polled while open: what the function wrote, or its last build. */
function LogsPanel({ name }: { name: string }) {
  const env = usePickedEnvironment();
  const [type, setType] = useState<LogsType>('runtime');
  const logs = useLoad(() => env.call<{ logs: string }>('function', 'Logs', { name, logs_type: type, lines: 200 }), [name, type, env.call]);
  useEffect(() => {
    const timer = setInterval(logs.reload, POLL_MS);
    return () => clearInterval(timer);
  }, [logs.reload]);
  return (
    <div className="logs">
      <div className="tabs" role="tablist" aria-label={`Logs of ${name}`}>
        {(['runtime', 'build'] as const).map((kind) => (
          <button key={kind} type="button" role="tab" aria-selected={type === kind} onClick={() => setType(kind)}>
            {kind === 'runtime' ? 'Runtime' : 'Build'}
          </button>
        ))}
      </div>
      <ErrorNotice error={logs.error} />
      {logs.loading && !logs.data ? (
        <Loading />
      ) : (
        <pre className="code-block log-block" aria-label={`${type === 'runtime' ? 'Runtime' : 'Build'} logs of ${name}`} data-testid="function-logs">
          {logs.data?.logs || 'No log lines yet.'}
        </pre>
      )}
      <p className="small">
        <a href={`#/logs?function=${encodeURIComponent(name)}`}>Filter and follow on the Logs page</a>
      </p>
    </div>
  );
}

/** function/Update: a new source (or the same one rebuilt); the old version serves until the new one does. */
function UpdatePanel({ fn, onUpdated }: { fn: FunctionView; onUpdated: () => void }) {
  const env = usePickedEnvironment();
  const [source, setSource] = useState(fn.source);
  const [entrypoint, setEntrypoint] = useState(fn.entrypoint);
  const update = useAction(async () => {
    const body: Record<string, unknown> = { name: fn.name };
    // Empty for a function from a repository or a folder: Update rebuilds it from where it came.
    if (source.trim()) body.source = source;
    if (entrypoint.trim() !== fn.entrypoint) body.entrypoint = entrypoint.trim();
    return env.call('function', 'Update', body);
  });
  async function submit(event: FormEvent) {
    event.preventDefault();
    if (await update.run()) onUpdated();
  }
  const sourceId = `update-source-${fn.name}`;
  const entrypointId = `update-entrypoint-${fn.name}`;
  return (
    <form className="row-editor" onSubmit={submit} aria-label={`New version of ${fn.name}`}>
      <Field id={sourceId} label="New source" hint={fn.source ? undefined : 'deployed from a repository or a folder: leave empty to build it again from there'}>
        <textarea
          id={sourceId}
          className="code"
          rows={12}
          spellCheck={false}
          wrap="off"
          value={source}
          onChange={(event) => setSource(event.target.value)}
          aria-describedby={fn.source ? undefined : `${sourceId}-hint`}
        />
      </Field>
      <Field id={entrypointId} label="Entrypoint" hint="empty: the default export takes a Request and returns a Response">
        <input id={entrypointId} className="code" value={entrypoint} onChange={(event) => setEntrypoint(event.target.value)} pattern="[A-Za-z_$][A-Za-z0-9_$]*" aria-describedby={`${entrypointId}-hint`} />
      </Field>
      <button type="submit" className="button-primary small" disabled={update.busy}>
        {update.busy ? 'Building…' : `Update ${fn.name}`}
      </button>
      {update.busy && <Loading label="Building the new version; the old one serves until it is ready…" />}
      <ErrorNotice error={update.error} onDismiss={update.clearError} />
    </form>
  );
}

function Deploy({ onDeployed }: { onDeployed: () => void }) {
  const environment = usePickedEnvironment();
  const [name, setName] = useState('');
  const [source, setSource] = useState(EXAMPLE_SOURCE);
  const [entrypoint, setEntrypoint] = useState('');
  const [env, setEnv] = useState('');
  const deploy = useAction(async () => {
    const body: Record<string, unknown> = { name: name.trim(), source, env_vars: parseEnv(env) };
    if (entrypoint.trim()) body.entrypoint = entrypoint.trim();
    return environment.call('function', 'Deploy', body);
  });
  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!(await deploy.run())) return;
    // Deployed: the form is ready for the next function (a second submit would ask for the same name).
    setName('');
    setSource(EXAMPLE_SOURCE);
    setEntrypoint('');
    setEnv('');
    onDeployed();
  }
  return (
    <section className="card" aria-labelledby="deploy-title">
      <h2 id="deploy-title">Deploy a function</h2>
      <form onSubmit={submit}>
        <div className="form-grid">
          <Field id="fn-name" label="Name" hint="lower-case letters, digits and dashes; part of its address">
            <input id="fn-name" value={name} onChange={(event) => setName(event.target.value)} pattern="[a-z0-9]([a-z0-9-]*[a-z0-9])?" maxLength={40} required aria-describedby="fn-name-hint" />
          </Field>
          <Field id="fn-entrypoint" label="Entrypoint" hint="optional: an exported function called with the JSON body (M3O style)">
            <input id="fn-entrypoint" className="code" value={entrypoint} onChange={(event) => setEntrypoint(event.target.value)} pattern="[A-Za-z_$][A-Za-z0-9_$]*" aria-describedby="fn-entrypoint-hint" />
          </Field>
        </div>
        <Field id="fn-source" label="Source" hint="one JavaScript or TypeScript module; without an entrypoint its default export takes a Request and returns a Response">
          <textarea id="fn-source" className="code" rows={10} spellCheck={false} wrap="off" value={source} onChange={(event) => setSource(event.target.value)} required aria-describedby="fn-source-hint" />
        </Field>
        <div className="field">
          <label htmlFor="fn-env">Environment variables</label>
          <textarea id="fn-env" className="code" rows={2} placeholder={'NAME=value\nGREETING=hello'} value={env} onChange={(event) => setEnv(event.target.value)} />
        </div>
        <button type="submit" className="button-primary" disabled={deploy.busy}>
          {deploy.busy ? 'Deploying…' : 'Deploy'}
        </button>
        {deploy.busy && <Loading label="Building the function and starting it…" />}
      </form>
      <ErrorNotice error={deploy.error} onDismiss={deploy.clearError} />
    </section>
  );
}
