/**
 * Apps (shown only when the instance has the `app` service): the apps of the picked environment
 * of the project (environment.tsx) with their
 * state and instances (app/List), a deploy form (app/Run: image, name, port, env, always on;
 * an app scales to zero unless always on), logs that follow the app (app/FollowLogs over a
 * websocket, or app/Logs polled), and delete.
 */
import { useEffect, useState, type FormEvent } from 'react';
import { loadOpenApi, type ApiError } from '../api';
import { EnvironmentPicker, useEnvironment, type EnvironmentChoice } from '../environment';
import { useAction, useLoad } from '../hooks';
import { useSession } from '../session';
import { ConfirmButton, Empty, ErrorNotice, Field, formatDate, Loading, PageHeader, parseEnv } from '../ui';

interface AppInstance {
  id: string;
  version: number;
  state: string;
  driver: string;
  started: string;
  exit_reason?: string;
}

interface AppService {
  id: string;
  name: string;
  image: string;
  port: number;
  status: string;
  url: string;
  version: number;
  memory: number;
  min_instances: number;
  max_instances: number;
  updated: string;
  error?: string;
  restarts: number;
  instances: AppInstance[];
}

const LOG_POLL_MS = 2000;

/** Running is well, failed is not; suspended is an idle app asleep as it should be (scale to zero), not a warning. */
function instanceDot(state: string): string {
  if (state === 'running') return 'dot-ok';
  if (state === 'failed') return 'dot-bad';
  if (state === 'suspended') return 'dot-off';
  return 'dot-warn';
}

export function AppsPage() {
  const session = useSession();
  const env = useEnvironment();
  const apps = useLoad(() => env.call<{ services: AppService[] }>('app', 'List'), [session.key, env.environment]);
  const [logsOf, setLogsOf] = useState<string>();
  const remove = useAction((name: string) => env.call('app', 'Delete', { name }));

  // While an app is deploying or updating, follow its state.
  const settling = apps.data?.services.some((app) => app.status === 'deploying' || app.status === 'updating');
  useEffect(() => {
    if (!settling) return;
    const timer = setInterval(apps.reload, LOG_POLL_MS);
    return () => clearInterval(timer);
  }, [settling, apps.reload]);

  return (
    <>
      <PageHeader title="Apps" description="Your OCI images running as apps on this machine, each at its own address." />
      <EnvironmentPicker choice={env} />
      <Deploy onDeployed={apps.reload} env={env} />
      <section className="card" aria-labelledby="apps-title">
        <div className="section-head">
          <h2 id="apps-title">Apps</h2>
          <button type="button" className="button-ghost small" onClick={apps.reload} disabled={apps.loading}>
            Refresh
          </button>
        </div>
        <ErrorNotice error={apps.error} />
        <ErrorNotice error={remove.error} onDismiss={remove.clearError} />
        {apps.loading && !apps.data ? (
          <Loading />
        ) : !apps.data?.services.length ? (
          <Empty>No apps yet. Deploy an image above.</Empty>
        ) : (
          <ul className="job-list">
            {apps.data.services.map((app) => (
              <li key={app.id} className="job" data-app={app.name}>
                <div className="section-head">
                  <div>
                    <h3>
                      {app.name} <span className={`status status-app-${app.status}`}>{app.status}</span>
                    </h3>
                    <p className="muted small">
                      <code>{app.image}</code> · v{app.version} · port {app.port} · {app.memory} MiB · updated {formatDate(app.updated)}
                    </p>
                    {app.url && (
                      <p className="small">
                        <a href={app.url} target="_blank" rel="noreferrer">
                          {app.url}
                        </a>
                      </p>
                    )}
                    {app.error && <p className="notice notice-error small">{app.error}</p>}
                  </div>
                  <div className="row">
                    <button type="button" className="button-secondary small" aria-expanded={logsOf === app.name} onClick={() => setLogsOf(logsOf === app.name ? undefined : app.name)}>
                      {logsOf === app.name ? 'Hide logs' : 'Logs'}
                    </button>
                    <ConfirmButton
                      label="Delete"
                      confirmLabel={`Delete ${app.name}`}
                      busy={remove.busy}
                      onConfirm={async () => {
                        await remove.run(app.name);
                        apps.reload();
                      }}
                    />
                  </div>
                </div>
                <p className="small">
                  {app.instances.length} instance{app.instances.length === 1 ? '' : 's'} ({app.min_instances === 0 ? 'scales to zero' : `always on, min ${app.min_instances}`}, max {app.max_instances})
                  {app.restarts > 0 && `, ${app.restarts} restarts`}
                </p>
                {app.instances.length > 0 && (
                  <ul className="chips">
                    {app.instances.map((instance) => (
                      <li key={instance.id} className="chip" title={instance.exit_reason ?? `started ${formatDate(instance.started)}`}>
                        <span className={`dot ${instanceDot(instance.state)}`} aria-hidden="true" /> {instance.id.slice(0, 8)} ·{' '}
                        {instance.state} · {instance.driver}
                      </li>
                    ))}
                  </ul>
                )}
                {logsOf === app.name && <Logs env={env} name={app.name} />}
              </li>
            ))}
          </ul>
        )}
      </section>
    </>
  );
}

interface LogLine {
  at: string;
  stream: 'stdout' | 'stderr' | 'system';
  line: string;
}

const MAX_LOG_LINES = 1000;

/** An app's logs: followed live over app/FollowLogs when the instance has it, else app/Logs polled. */
function Logs({ name, env }: { name: string; env: EnvironmentChoice }) {
  const session = useSession();
  const document = useLoad(loadOpenApi, []);
  const follow = Boolean(document.data?.paths['/v1/app/FollowLogs']);
  if (document.loading && !document.data) return <Loading />;
  return follow ? <FollowedLogs name={name} env={env} /> : <PolledLogs name={name} env={env} key={session.key} />;
}

function FollowedLogs({ name, env }: { name: string; env: EnvironmentChoice }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [error, setError] = useState<ApiError>();
  const [live, setLive] = useState(false);
  useEffect(() => {
    setLines([]);
    return env.stream('app', 'FollowLogs', { name, lines: 200 }, {
      onOpen: () => setLive(true),
      onMessage: (message) => setLines((current) => [...current, message as LogLine].slice(-MAX_LOG_LINES)),
      onError: setError,
      onClose: () => setLive(false),
    });
  }, [name, env.stream]);
  return (
    <div className="logs">
      <p className="muted small" role="status">
        <span className={`dot ${live ? 'dot-ok' : 'dot-off'}`} aria-hidden="true" /> {live ? 'following' : 'not following'}
      </p>
      <ErrorNotice error={error} />
      <pre className="code-block log-block" aria-label={`Logs of ${name}`} data-testid="app-logs">
        {lines.length ? lines.map((line) => (line.stream === 'system' ? `alto: ${line.line}` : line.line)).join('\n') : 'No log lines yet.'}
      </pre>
      <p className="small">
        <a href={`#/logs?app=${encodeURIComponent(name)}&env=${encodeURIComponent(env.environment)}`}>Filter, follow and see the last build on the Logs page</a>
      </p>
    </div>
  );
}

function PolledLogs({ name, env }: { name: string; env: EnvironmentChoice }) {
  const logs = useLoad(() => env.call<{ logs: string }>('app', 'Logs', { name, lines: 200 }), [name, env.call]);
  useEffect(() => {
    const timer = setInterval(logs.reload, LOG_POLL_MS);
    return () => clearInterval(timer);
  }, [logs.reload]);
  return (
    <div className="logs">
      <ErrorNotice error={logs.error} />
      {logs.loading && !logs.data ? (
        <Loading />
      ) : (
        <pre className="code-block log-block" aria-label={`Logs of ${name}`} data-testid="app-logs">
          {logs.data?.logs || 'No log lines yet.'}
        </pre>
      )}
    </div>
  );
}

function Deploy({ onDeployed, env: environment }: { onDeployed: () => void; env: EnvironmentChoice }) {
  const [name, setName] = useState('');
  const [image, setImage] = useState('');
  const [port, setPort] = useState('');
  const [env, setEnv] = useState('');
  const [alwaysOn, setAlwaysOn] = useState(false);
  const deploy = useAction(async () => {
    const body: Record<string, unknown> = { name: name.trim(), image: image.trim(), env_vars: parseEnv(env) };
    if (port.trim()) body.port = Number(port);
    // Left out, min_instances is 0: the app is suspended when idle and woken by the next request.
    if (alwaysOn) body.min_instances = 1;
    return environment.call('app', 'Run', body);
  });
  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!(await deploy.run())) return;
    // Deployed: the form is ready for the next app (a second submit would ask for the same name).
    setName('');
    setImage('');
    setPort('');
    setEnv('');
    setAlwaysOn(false);
    onDeployed();
  }
  return (
    <section className="card" aria-labelledby="deploy-title">
      <h2 id="deploy-title">Deploy an app</h2>
      <form onSubmit={submit}>
        <div className="form-grid">
          <Field id="app-name" label="Name" hint="lower-case letters, digits and dashes; part of its address">
            <input id="app-name" value={name} onChange={(event) => setName(event.target.value)} pattern="[a-z0-9]([a-z0-9-]*[a-z0-9])?" maxLength={40} required aria-describedby="app-name-hint" />
          </Field>
          <Field id="app-image" label="Image" hint="an OCI image, e.g. ghcr.io/org/web:v1">
            <input id="app-image" value={image} onChange={(event) => setImage(event.target.value)} required aria-describedby="app-image-hint" />
          </Field>
          <Field id="app-port" label="Port" hint="empty: the image's first exposed port, else 8080">
            <input id="app-port" type="number" min={1} max={65535} value={port} onChange={(event) => setPort(event.target.value)} aria-describedby="app-port-hint" />
          </Field>
        </div>
        <div className="field">
          <label htmlFor="app-env">Environment variables</label>
          <textarea id="app-env" className="code" rows={3} placeholder={'NAME=value\nGREETING=hello'} value={env} onChange={(event) => setEnv(event.target.value)} />
        </div>
        <div className="field">
          <label className="checkbox">
            <input type="checkbox" checked={alwaysOn} onChange={(event) => setAlwaysOn(event.target.checked)} aria-describedby="app-always-on-hint" /> Always on
          </label>
          <p className="hint" id="app-always-on-hint">
            off: the app scales to zero, suspended once ready and after 5 s without requests, and the next request wakes it; on: one instance keeps running (<code>min_instances: 1</code>)
          </p>
        </div>
        <button type="submit" className="button-primary" disabled={deploy.busy}>
          {deploy.busy ? 'Deploying…' : 'Deploy'}
        </button>
      </form>
      <ErrorNotice error={deploy.error} onDismiss={deploy.clearError} />
    </section>
  );
}
