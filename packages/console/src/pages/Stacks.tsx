/**
 * Stacks (shown only when the instance has the `template` service): the project's stacks with
 * each compose service's app, status and address (template/List), a form that deploys a template
 * as a stack (template/Deploy: compose.yaml, an optional alto.yaml and KEY=VALUE parameters), and
 * a two-step destroy that may also delete the stack's volumes and secrets (template/Destroy).
 */
import { useEffect, useState, type FormEvent } from 'react';
import { useAction, useLoad } from '../hooks';
import { useSession } from '../session';
import { Empty, ErrorNotice, Field, Loading, PageHeader } from '../ui';

/** One compose service of a stack, as template/List and Deploy answer it. */
interface StackService {
  service: string;
  app: string;
  status: string;
  url?: string;
  tcp_port?: number;
}

interface Stack {
  name: string;
  services: StackService[];
}

interface DeployResult {
  stack: Stack;
  warnings: string[];
  secrets: string[];
  public?: string;
}

const POLL_MS = 2000;

const EXAMPLE_COMPOSE = `services:
  web:
    image: ghcr.io/org/web:v1
    ports: ["8080"]
`;

/**
 * `KEY=value` lines into the parameters template/Deploy takes as `set`; blank lines and # comments
 * are skipped. The server checks the names, so a wrong one is answered with what it expects.
 */
function parseParameters(text: string): Record<string, string> {
  const parameters: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) continue;
    const equals = trimmed.indexOf('=');
    if (equals <= 0) throw new Error(`parameter line "${trimmed}" is not KEY=VALUE`);
    parameters[trimmed.slice(0, equals).trim()] = trimmed.slice(equals + 1);
  }
  return parameters;
}

export function StacksPage() {
  const session = useSession();
  const stacks = useLoad(() => session.call<{ stacks: Stack[] }>('template', 'List'), [session.key]);

  // While a service's app is deploying or updating, follow its state.
  const settling = stacks.data?.stacks.some((stack) => stack.services.some((service) => service.status === 'deploying' || service.status === 'updating'));
  useEffect(() => {
    if (!settling) return;
    const timer = setInterval(stacks.reload, POLL_MS);
    return () => clearInterval(timer);
  }, [settling, stacks.reload]);

  return (
    <>
      <PageHeader title="Stacks" description="Templates deployed as one: an app per compose service, named <stack>-<service>, each linked to the others." />
      <Deploy onDeployed={stacks.reload} />
      <section className="card" aria-labelledby="stacks-title">
        <div className="section-head">
          <h2 id="stacks-title">Stacks</h2>
          <button type="button" className="button-ghost small" onClick={stacks.reload} disabled={stacks.loading}>
            Refresh
          </button>
        </div>
        <ErrorNotice error={stacks.error} />
        {stacks.loading && !stacks.data ? (
          <Loading />
        ) : !stacks.data?.stacks.length ? (
          <Empty>No stacks yet. Deploy a template above.</Empty>
        ) : (
          <div className="table-wrap">
            <table aria-labelledby="stacks-title">
              <thead>
                <tr>
                  <th scope="col">Stack</th>
                  <th scope="col">Service</th>
                  <th scope="col">App</th>
                  <th scope="col">Status</th>
                  <th scope="col">Address</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              {stacks.data.stacks.map((stack) => (
                <StackRows key={stack.name} stack={stack} onDestroyed={stacks.reload} />
              ))}
            </table>
          </div>
        )}
      </section>
    </>
  );
}

/** A stack's services, one row each; its name and its destroy control span them. */
function StackRows({ stack, onDestroyed }: { stack: Stack; onDestroyed: () => void }) {
  const span = Math.max(1, stack.services.length);
  const services: (StackService | undefined)[] = stack.services.length ? stack.services : [undefined];
  return (
    <tbody data-stack={stack.name}>
      {services.map((service, index) => (
        <tr key={service?.service ?? index} data-service={service?.service}>
          {index === 0 && (
            <th scope="rowgroup" rowSpan={span}>
              {stack.name}
            </th>
          )}
          {service ? (
            <>
              <td>{service.service}</td>
              <td>
                <code>{service.app}</code>
              </td>
              <td>
                <span className={`status status-app-${service.status}`}>{service.status}</span>
              </td>
              <td>
                {service.tcp_port !== undefined ? (
                  `tcp port ${service.tcp_port}`
                ) : service.url ? (
                  <a href={service.url} target="_blank" rel="noreferrer">
                    {service.url}
                  </a>
                ) : (
                  <span className="muted">—</span>
                )}
              </td>
            </>
          ) : (
            <td colSpan={4} className="muted">
              no services
            </td>
          )}
          {index === 0 && (
            <td className="actions" rowSpan={span}>
              <Destroy name={stack.name} onDestroyed={onDestroyed} />
            </td>
          )}
        </tr>
      ))}
    </tbody>
  );
}

/** Destroy in two steps: the first press asks (and offers to delete the data too), the second does it. */
function Destroy({ name, onDestroyed }: { name: string; onDestroyed: () => void }) {
  const session = useSession();
  const [asking, setAsking] = useState(false);
  const [volumes, setVolumes] = useState(false);
  const destroy = useAction(() => session.call<{ removed: string[] }>('template', 'Destroy', { name, volumes }));
  const checkboxId = `destroy-volumes-${name}`;
  return (
    <>
      {!asking ? (
        <button type="button" className="button-danger small" onClick={() => setAsking(true)}>
          Destroy
        </button>
      ) : (
        <span className="confirm" role="group" aria-label={`Destroy ${name}`}>
          <label className="checkbox small" htmlFor={checkboxId}>
            <input id={checkboxId} type="checkbox" checked={volumes} onChange={(event) => setVolumes(event.target.checked)} /> Also delete volumes and secrets
          </label>
          <button
            type="button"
            className="button-danger-solid small"
            autoFocus
            disabled={destroy.busy}
            onClick={async () => {
              if (!(await destroy.run())) return;
              setAsking(false);
              onDestroyed();
            }}
          >
            {destroy.busy ? 'Destroying…' : `Destroy ${name}`}
          </button>
          <button type="button" className="button-ghost small" onClick={() => setAsking(false)} disabled={destroy.busy}>
            Cancel
          </button>
        </span>
      )}
      <ErrorNotice error={destroy.error} onDismiss={destroy.clearError} />
    </>
  );
}

function Deploy({ onDeployed }: { onDeployed: () => void }) {
  const session = useSession();
  const [name, setName] = useState('');
  const [compose, setCompose] = useState(EXAMPLE_COMPOSE);
  const [alto, setAlto] = useState('');
  const [parameters, setParameters] = useState('');
  const [deployed, setDeployed] = useState<DeployResult>();
  const deploy = useAction(async () => {
    const body: Record<string, unknown> = { name: name.trim(), compose };
    if (alto.trim()) body.alto = alto;
    const set = parseParameters(parameters);
    if (Object.keys(set).length > 0) body.set = set;
    return session.call<DeployResult>('template', 'Deploy', body);
  });
  async function submit(event: FormEvent) {
    event.preventDefault();
    setDeployed(undefined);
    const result = await deploy.run();
    if (!result) return;
    // Deployed: the form is ready for the next stack (a second submit would ask for the same name).
    setDeployed(result);
    setName('');
    setCompose(EXAMPLE_COMPOSE);
    setAlto('');
    setParameters('');
    onDeployed();
  }
  return (
    <section className="card" aria-labelledby="deploy-title">
      <h2 id="deploy-title">Deploy a template</h2>
      <form onSubmit={submit}>
        <Field id="stack-name" label="Stack name" hint="1-20 lower-case letters, digits and dashes; its apps are <name>-<service>">
          <input
            id="stack-name"
            value={name}
            onChange={(event) => setName(event.target.value)}
            pattern="[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?"
            maxLength={20}
            required
            aria-describedby="stack-name-hint"
          />
        </Field>
        <Field id="stack-compose" label="compose.yaml" hint="the Compose Specification: one app per service">
          <textarea
            id="stack-compose"
            className="code"
            rows={10}
            spellCheck={false}
            wrap="off"
            value={compose}
            onChange={(event) => setCompose(event.target.value)}
            required
            aria-describedby="stack-compose-hint"
          />
        </Field>
        <Field id="stack-alto" label="alto.yaml (optional)" hint="parameters, secrets and the public service">
          <textarea
            id="stack-alto"
            className="code"
            rows={4}
            spellCheck={false}
            wrap="off"
            value={alto}
            onChange={(event) => setAlto(event.target.value)}
            aria-describedby="stack-alto-hint"
          />
        </Field>
        <Field id="stack-parameters" label="Parameters" hint="one KEY=VALUE per line, as alto template deploy --set gives them">
          <textarea
            id="stack-parameters"
            className="code"
            rows={2}
            spellCheck={false}
            placeholder={'REGISTRY=ghcr.io/org\nDB_PASSWORD=…'}
            value={parameters}
            onChange={(event) => setParameters(event.target.value)}
            aria-describedby="stack-parameters-hint"
          />
        </Field>
        <button type="submit" className="button-primary" disabled={deploy.busy}>
          {deploy.busy ? 'Deploying…' : 'Deploy'}
        </button>
        {deploy.busy && <Loading label="Starting the services in dependency order, each once those it depends on are ready…" />}
      </form>
      <ErrorNotice error={deploy.error} onDismiss={deploy.clearError} />
      {deployed && <Deployed result={deployed} />}
    </section>
  );
}

/** What a deploy answered: the stack, what the template asked that was ignored, and the secrets it keeps. */
function Deployed({ result }: { result: DeployResult }) {
  return (
    <div className="notice notice-ok" role="status" data-testid="stack-deployed">
      <p>
        Deployed stack <strong>{result.stack.name}</strong> ({result.stack.services.map((service) => service.app).join(', ')}).
        {result.public && (
          <>
            {' '}
            Public at{' '}
            <a href={result.public} target="_blank" rel="noreferrer">
              {result.public}
            </a>
            .
          </>
        )}
      </p>
      {result.warnings.length > 0 && (
        <>
          <p>Ignored by Alto:</p>
          <ul aria-label="Warnings">
            {result.warnings.map((warning) => (
              <li key={warning}>{warning}</li>
            ))}
          </ul>
        </>
      )}
      {result.secrets.length > 0 && (
        <p>
          Secrets (kept in secret, never shown):{' '}
          {result.secrets.map((key, index) => (
            <span key={key}>
              {index > 0 && ', '}
              <code>{key}</code>
            </span>
          ))}
        </p>
      )}
    </div>
  );
}
