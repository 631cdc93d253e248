/**
 * API keys of a project: generate one (project, environment, scopes, limits) and see it once
 * with a copy button; list, revoke, block and unblock.
 */
import { useEffect, useState, type FormEvent } from 'react';
import { useAction, useLoad, useRoute } from '../hooks';
import { useSession } from '../session';
import { ConfirmButton, CopyButton, Empty, ErrorNotice, Field, formatDate, Loading, PageHeader } from '../ui';
import type { ProjectView } from './Projects';

interface KeyInfo {
  id: string;
  project: string;
  environment: string;
  scopes: string[];
  description: string;
  role: string;
  status: 'active' | 'blocked' | 'revoked';
  prefix: string;
  created: string;
}

export function KeysPage() {
  const session = useSession();
  const { params } = useRoute();
  const projects = useLoad(() => session.call<{ projects: ProjectView[] }>('projects', 'List'), [session.key]);
  const [project, setProject] = useState<string>(params.get('project') ?? '');
  const [showRevoked, setShowRevoked] = useState(false);
  const [newKey, setNewKey] = useState<{ key: string; info: KeyInfo }>();

  useEffect(() => {
    const names = projects.data?.projects.map((entry) => entry.name) ?? [];
    if (names.length && !names.includes(project)) setProject(names.includes(session.status.key.project) ? session.status.key.project : names[0]);
  }, [projects.data, project, session.status.key.project]);

  const keys = useLoad(async () => (project ? (await session.call<{ keys: KeyInfo[] }>('keys', 'List', { project })).keys : []), [project, session.key]);
  const change = useAction((endpoint: 'Revoke' | 'Block' | 'Unblock', id: string) => session.call('keys', endpoint, { id }));
  const act = async (endpoint: 'Revoke' | 'Block' | 'Unblock', id: string) => {
    await change.run(endpoint, id);
    keys.reload();
  };
  const visible = (keys.data ?? []).filter((key) => showRevoked || key.status !== 'revoked');

  return (
    <>
      <PageHeader title="API keys" description="Each key belongs to one project and environment and may call only the services in its scopes. Keys are shown once; Alto keeps only their hash." />
      <ErrorNotice error={projects.error} />
      {newKey && <NewKeyPanel created={newKey} onDone={() => setNewKey(undefined)} />}
      <GenerateKey
        projects={projects.data?.projects.map((entry) => entry.name) ?? []}
        project={project}
        onGenerated={(created) => {
          setNewKey(created);
          if (created.info.project !== project) setProject(created.info.project);
          else keys.reload();
        }}
      />
      <section className="card" aria-labelledby="keys-title">
        <div className="section-head">
          <h2 id="keys-title">Keys</h2>
          <div className="row">
            <label className="inline-field" htmlFor="keys-project">
              Project
              <select id="keys-project" value={project} onChange={(event) => setProject(event.target.value)}>
                {projects.data?.projects.map((entry) => (
                  <option key={entry.id} value={entry.name}>
                    {entry.name}
                  </option>
                ))}
              </select>
            </label>
            <label className="checkbox">
              <input type="checkbox" checked={showRevoked} onChange={(event) => setShowRevoked(event.target.checked)} /> Show revoked
            </label>
          </div>
        </div>
        <ErrorNotice error={keys.error} />
        <ErrorNotice error={change.error} onDismiss={change.clearError} />
        {keys.loading && !keys.data ? (
          <Loading />
        ) : visible.length === 0 ? (
          <Empty>No keys in this project yet.</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Key</th>
                  <th scope="col">Environment</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {visible.map((key) => (
                  <tr key={key.id} data-key-id={key.id}>
                    <th scope="row">
                      <code>{key.prefix}…</code>
                      <div className="muted small">{key.description || key.role}</div>
                    </th>
                    <td>
                      <span className="tag">{key.environment}</span>
                    </td>
                    <td className="scopes">{key.scopes.includes('*') ? 'all services' : key.scopes.join(', ')}</td>
                    <td>
                      <span className={`status status-${key.status}`}>{key.status}</span>
                    </td>
                    <td>{formatDate(key.created)}</td>
                    <td className="actions">
                      {key.status === 'active' && (
                        <button type="button" className="button-secondary small" onClick={() => act('Block', key.id)} disabled={change.busy}>
                          Block
                        </button>
                      )}
                      {key.status === 'blocked' && (
                        <button type="button" className="button-secondary small" onClick={() => act('Unblock', key.id)} disabled={change.busy}>
                          Unblock
                        </button>
                      )}
                      {key.status !== 'revoked' && key.role !== 'admin' && (
                        <ConfirmButton label="Revoke" confirmLabel="Revoke for good" busy={change.busy} onConfirm={() => act('Revoke', key.id)} />
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

function NewKeyPanel({ created, onDone }: { created: { key: string; info: KeyInfo }; onDone: () => void }) {
  return (
    <section className="card new-key" aria-labelledby="new-key-title" role="region">
      <h2 id="new-key-title">Your new key</h2>
      <p>
        <strong>Copy it now: you will not see it again.</strong> Alto stores only its hash. It belongs to <strong>{created.info.project}</strong> /{' '}
        {created.info.environment} and may call {created.info.scopes.includes('*') ? 'every service' : created.info.scopes.join(', ')}.
      </p>
      <div className="secret-row">
        <code className="secret" data-testid="new-key">
          {created.key}
        </code>
        <CopyButton text={created.key} label="Copy key" />
      </div>
      <button type="button" className="button-ghost" onClick={onDone}>
        I have stored it
      </button>
    </section>
  );
}

function GenerateKey({ projects, project, onGenerated }: { projects: string[]; project: string; onGenerated: (created: { key: string; info: KeyInfo }) => void }) {
  const session = useSession();
  const services = session.status.services.filter((name) => name !== 'accounts');
  const [target, setTarget] = useState(project);
  const [environment, setEnvironment] = useState('dev');
  const [description, setDescription] = useState('');
  const [all, setAll] = useState(true);
  const [scopes, setScopes] = useState<string[]>([]);
  const [rateLimit, setRateLimit] = useState('');
  const [quota, setQuota] = useState('');
  useEffect(() => setTarget(project), [project]);

  const generate = useAction(async () => {
    const body: Record<string, unknown> = { project: target, environment: environment.trim() || 'dev', description, scopes: all ? ['*'] : scopes };
    if (rateLimit.trim()) body.rate_limit = Number(rateLimit);
    if (quota.trim()) body.monthly_quota = Number(quota);
    return session.call<{ key: string; info: KeyInfo }>('keys', 'Generate', body);
  });

  async function submit(event: FormEvent) {
    event.preventDefault();
    const created = await generate.run();
    if (created) {
      onGenerated(created);
      setDescription('');
    }
  }

  return (
    <section className="card" aria-labelledby="generate-title">
      <h2 id="generate-title">Generate a key</h2>
      <form onSubmit={submit}>
        <div className="form-grid">
          <Field id="key-project" label="Project">
            <select id="key-project" value={target} onChange={(event) => setTarget(event.target.value)} required>
              {projects.map((name) => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
            </select>
          </Field>
          <Field id="key-environment" label="Environment" hint="e.g. dev or prod">
            <input id="key-environment" list="environments" value={environment} onChange={(event) => setEnvironment(event.target.value)} aria-describedby="key-environment-hint" />
            <datalist id="environments">
              <option value="dev" />
              <option value="staging" />
              <option value="prod" />
            </datalist>
          </Field>
          <Field id="key-description" label="Description">
            <input id="key-description" value={description} maxLength={500} onChange={(event) => setDescription(event.target.value)} placeholder="backend server" />
          </Field>
          <Field id="key-rate" label="Rate limit (requests/s)" hint="optional">
            <input id="key-rate" type="number" min={0} value={rateLimit} onChange={(event) => setRateLimit(event.target.value)} aria-describedby="key-rate-hint" />
          </Field>
          <Field id="key-quota" label="Monthly quota" hint="optional">
            <input id="key-quota" type="number" min={0} value={quota} onChange={(event) => setQuota(event.target.value)} aria-describedby="key-quota-hint" />
          </Field>
        </div>
        <fieldset className="scopes-fieldset">
          <legend>Scopes</legend>
          <label className="checkbox">
            <input type="checkbox" checked={all} onChange={(event) => setAll(event.target.checked)} /> All services (<code>*</code>)
          </label>
          {!all && (
            <div className="checkbox-grid">
              {services.map((service) => (
                <label className="checkbox" key={service}>
                  <input
                    type="checkbox"
                    name="scope"
                    value={service}
                    checked={scopes.includes(service)}
                    onChange={(event) => setScopes((current) => (event.target.checked ? [...current, service] : current.filter((name) => name !== service)))}
                  />{' '}
                  {service}
                </label>
              ))}
            </div>
          )}
        </fieldset>
        <div className="form-actions">
          <button type="submit" className="button-primary" disabled={generate.busy || !target || (!all && scopes.length === 0)}>
            {generate.busy ? 'Generating…' : 'Generate key'}
          </button>
        </div>
      </form>
      <ErrorNotice error={generate.error} onDismiss={generate.clearError} />
    </section>
  );
}
