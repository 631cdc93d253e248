/**
 * Projects of the account and their environments (the environments its keys are in), with
 * their rate limit, monthly quota, how many days their request log keeps and how long and how
 * much of their apps' logs they keep (log_days, log_bytes); create with limits,
 * delete with a confirmation.
 */
import { useState, type FormEvent } from 'react';
import { useAction, useLoad } from '../hooks';
import { useSession } from '../session';
import { ConfirmButton, Empty, ErrorNotice, Field, formatBytes, formatDate, formatNumber, Loading, PageHeader } from '../ui';

export interface ProjectView {
  id: string;
  name: string;
  created: string;
  limits: { rate_limit: number; monthly_quota: number; [name: string]: number };
  /** Days its request log keeps (0: none). */
  request_log_days?: number;
  /** Days its apps' log lines are kept. */
  log_days?: number;
  /** Bytes its apps' logs hold together on a node. */
  log_bytes?: number;
}

interface KeyListItem {
  environment: string;
  status: string;
}

export function ProjectsPage() {
  const session = useSession();
  const projects = useLoad(async () => {
    const { projects: list } = await session.call<{ projects: ProjectView[] }>('projects', 'List');
    // Environments exist through keys: gather each project's from its key list.
    const environments = await Promise.all(
      list.map(async (project) => {
        try {
          const { keys } = await session.call<{ keys: KeyListItem[] }>('keys', 'List', { project: project.name });
          return [...new Set(keys.filter((key) => key.status !== 'revoked').map((key) => key.environment))].sort();
        } catch {
          return [];
        }
      }),
    );
    return list.map((project, index) => ({ ...project, environments: environments[index] }));
  }, [session.key]);

  const remove = useAction((name: string) => session.call('projects', 'Delete', { name }));

  return (
    <>
      <PageHeader title="Projects" description="Projects group keys and data: every key belongs to one project and environment, and each project's data is kept apart." />
      <CreateProject onCreated={projects.reload} />
      <section className="card" aria-labelledby="projects-title">
        <div className="section-head">
          <h2 id="projects-title">Your projects</h2>
          <button type="button" className="button-ghost small" onClick={projects.reload} disabled={projects.loading}>
            Refresh
          </button>
        </div>
        <ErrorNotice error={projects.error} />
        <ErrorNotice error={remove.error} onDismiss={remove.clearError} />
        {projects.loading && !projects.data ? (
          <Loading />
        ) : projects.data && projects.data.length === 0 ? (
          <Empty>No projects yet. Create one above.</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Environments</th>
                  <th scope="col">Rate limit</th>
                  <th scope="col">Monthly quota</th>
                  <th scope="col">Request log</th>
                  <th scope="col">App logs</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {projects.data?.map((project) => (
                  <tr key={project.id} data-project={project.name}>
                    <th scope="row">
                      <a href={`#/keys?project=${encodeURIComponent(project.name)}`}>{project.name}</a>
                    </th>
                    <td>
                      {project.environments.length ? (
                        project.environments.map((environment) => (
                          <span key={environment} className="tag">
                            {environment}
                          </span>
                        ))
                      ) : (
                        <span className="muted">no keys yet</span>
                      )}
                    </td>
                    <td>{project.limits.rate_limit ? `${formatNumber(project.limits.rate_limit)}/s` : 'none'}</td>
                    <td>{project.limits.monthly_quota ? formatNumber(project.limits.monthly_quota) : 'none'}</td>
                    <td>{project.request_log_days === undefined ? '—' : project.request_log_days === 0 ? 'off' : <a href="#/requests">{`${project.request_log_days} days`}</a>}</td>
                    <td data-app-logs>{project.log_days === undefined || project.log_bytes === undefined ? '—' : `${project.log_days} days, ${formatBytes(project.log_bytes)}`}</td>
                    <td>{formatDate(project.created)}</td>
                    <td className="actions">
                      <ConfirmButton
                        label="Delete"
                        confirmLabel={`Delete ${project.name} and revoke its keys`}
                        busy={remove.busy}
                        onConfirm={async () => {
                          await remove.run(project.name);
                          projects.reload();
                        }}
                      />
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

function optionalNumber(text: string): number | undefined {
  return text.trim() === '' ? undefined : Number(text);
}

function CreateProject({ onCreated }: { onCreated: () => void }) {
  const session = useSession();
  const [name, setName] = useState('');
  const [rateLimit, setRateLimit] = useState('');
  const [quota, setQuota] = useState('');
  const [created, setCreated] = useState<string>();
  const create = useAction(async () => {
    const body: Record<string, unknown> = { name: name.trim() };
    const rate = optionalNumber(rateLimit);
    const monthly = optionalNumber(quota);
    if (rate !== undefined) body.rate_limit = rate;
    if (monthly !== undefined) body.monthly_quota = monthly;
    return session.call<{ project: ProjectView }>('projects', 'Create', body);
  });

  async function submit(event: FormEvent) {
    event.preventDefault();
    const answer = await create.run();
    if (!answer) return;
    setCreated(answer.project.name);
    setName('');
    setRateLimit('');
    setQuota('');
    onCreated();
  }

  return (
    <section className="card" aria-labelledby="create-project-title">
      <h2 id="create-project-title">New project</h2>
      <form className="form-grid" onSubmit={submit}>
        <Field id="project-name" label="Name" hint="lower-case letters, digits and dashes">
          <input id="project-name" value={name} onChange={(event) => setName(event.target.value)} pattern="[a-z0-9][a-z0-9-]*" required aria-describedby="project-name-hint" />
        </Field>
        <Field id="project-rate" label="Rate limit (requests/s)" hint="empty: the free tier's">
          <input id="project-rate" type="number" min={0} inputMode="numeric" value={rateLimit} onChange={(event) => setRateLimit(event.target.value)} aria-describedby="project-rate-hint" />
        </Field>
        <Field id="project-quota" label="Monthly quota (requests)" hint="0 means no limit">
          <input id="project-quota" type="number" min={0} inputMode="numeric" value={quota} onChange={(event) => setQuota(event.target.value)} aria-describedby="project-quota-hint" />
        </Field>
        <div className="form-actions">
          <button type="submit" className="button-primary" disabled={create.busy}>
            {create.busy ? 'Creating…' : 'Create project'}
          </button>
        </div>
      </form>
      <ErrorNotice error={create.error} onDismiss={create.clearError} />
      {created && !create.error && (
        <p className="notice notice-ok" role="status">
          Project <strong>{created}</strong> created. <a href={`#/keys?project=${encodeURIComponent(created)}`}>Generate a key for it</a>.
        </p>
      )}
    </section>
  );
}
