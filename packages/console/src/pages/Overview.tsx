/** The first page after sign-in: who you are, what the instance runs, and where to start. */
import type { BackupStatus, CertificateStatus, Status } from '../api';
import { useSession } from '../session';
import { PageHeader } from '../ui';

export function OverviewPage() {
  const { status, canManage } = useSession();
  const uptime = formatUptime(status.uptime_seconds);
  return (
    <>
      <PageHeader title="Overview" description="This instance and the key you are using." />
      <section className="cards" aria-label="Instance">
        <div className="card stat">
          <span className="stat-label">Signed in as</span>
          <span className="stat-value">{status.key.role}</span>
          <span className="muted small">
            project <strong>{status.key.project}</strong>, environment <strong>{status.key.environment}</strong>
          </span>
        </div>
        <div className="card stat">
          <span className="stat-label">Scopes</span>
          <span className="stat-value">{status.key.scopes.includes('*') ? 'all services' : status.key.scopes.length}</span>
          <span className="muted small">{status.key.scopes.includes('*') ? '*' : status.key.scopes.join(', ')}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Instance</span>
          <span className="stat-value">
            <span className={`dot ${status.ready ? 'dot-ok' : 'dot-warn'}`} aria-hidden="true" /> {status.ready ? 'ready' : 'starting'}
          </span>
          <span className="muted small">
            Alto {status.version}, up {uptime}
          </span>
        </div>
        <div className="card stat">
          <span className="stat-label">Store</span>
          <span className="stat-value small-value">{status.store.split(' ')[0]}</span>
          <span className="muted small ellipsis" title={status.store}>
            {status.store}
          </span>
        </div>
      </section>
      {status.https && <HttpsCard https={status.https} />}
      {status.backups && <BackupsCard backups={status.backups} />}
      <section aria-labelledby="start-title" className="card">
        <h2 id="start-title">Start here</h2>
        <ol className="steps">
          {canManage && (
            <li>
              <a href="#/projects">Create a project</a> and <a href="#/keys">generate a key</a> scoped to the services it needs.
            </li>
          )}
          <li>
            Try any endpoint in the <a href="#/explorer">API explorer</a>, and copy the curl, SDK or CLI call it shows.
          </li>
          <li>
            Look at your data in the <a href="#/db">database</a> and <a href="#/space">space</a> browsers, and watch <a href="#/usage">usage</a> move.
          </li>
        </ol>
      </section>
      <section aria-labelledby="services-title" className="card">
        <h2 id="services-title">Services on this instance</h2>
        <ul className="chips">
          {status.services.map((service) => (
            <li key={service}>
              <a className="chip" href={`#/explorer?service=${service}`}>
                {service}
              </a>
            </li>
          ))}
        </ul>
      </section>
    </>
  );
}

/** HTTPS on this instance: its port and, with ACME, each certificate's state and any failure's reason. */
function HttpsCard({ https }: { https: NonNullable<Status['https']> }) {
  const certificates = https.certificates ?? [];
  return (
    <section aria-labelledby="https-title" className="card">
      <h2 id="https-title">HTTPS</h2>
      <p className="muted small">
        Port {https.port}
        {https.acme_directory ? <>, certificates from {https.acme_directory}</> : ', with the certificate given to alto up'}
      </p>
      {https.acme_directory && certificates.length === 0 && <p className="muted small">No certificate asked for yet.</p>}
      {certificates.length > 0 && (
        <table className="compact" aria-label="Certificates">
          <thead>
            <tr>
              <th>Host</th>
              <th>Status</th>
              <th>Expires</th>
              <th>Renews</th>
              <th>Last failure</th>
            </tr>
          </thead>
          <tbody>
            {certificates.map((certificate) => (
              <tr key={certificate.host} data-host={certificate.host}>
                <td>{certificate.host}</td>
                <td>
                  <span className={`dot ${dotOf(certificate)}`} aria-hidden="true" /> {certificate.status}
                  {certificate.failures > 0 && <span className="muted small"> ({certificate.failures} failed)</span>}
                </td>
                <td>{certificate.not_after ? new Date(certificate.not_after).toLocaleString() : '—'}</td>
                <td>{certificate.renew_at ? new Date(certificate.renew_at).toLocaleString() : '—'}</td>
                <td className="small">
                  {certificate.error ?? '—'}
                  {certificate.next_attempt && certificate.error && <span className="muted"> (next try {new Date(certificate.next_attempt).toLocaleTimeString()})</span>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** Scheduled backups: where they go, the last one, and a failure with its reason while it lasts. */
function BackupsCard({ backups }: { backups: BackupStatus }) {
  const success = backups.last_success;
  const failure = backups.last_failure;
  const failing = failure !== undefined && (!success || failure.at > success.finished_at);
  return (
    <section aria-labelledby="backups-title" className="card">
      <h2 id="backups-title">Backups</h2>
      <p className="muted small">
        Every {formatPeriod(backups.every_seconds)} into {backups.to}, keeping the newest {backups.keep}
        {backups.running && ' (one running now)'}
      </p>
      <dl className="compact" aria-label="Last backup">
        <dt>Last backup</dt>
        <dd data-field="last-success">
          <span className={`dot ${failing ? 'dot-bad' : success ? 'dot-ok' : 'dot-warn'}`} aria-hidden="true" />{' '}
          {success ? `${new Date(success.finished_at).toLocaleString()}: ${success.files} files, ${formatBytes(success.copied_bytes)} new, in ${success.seconds.toFixed(1)} s` : 'none yet'}
        </dd>
        {failing && (
          <>
            <dt>Failing</dt>
            <dd data-field="last-failure">
              last tried {new Date(failure.at).toLocaleString()} ({backups.failures} failed so far): {failure.reason}
            </dd>
          </>
        )}
        {success?.skipped.map((skipped) => (
          <dd key={skipped} className="small">
            Not copied: {skipped}
          </dd>
        ))}
        {backups.next_at && (
          <>
            <dt>Next</dt>
            <dd>{new Date(backups.next_at).toLocaleString()}</dd>
          </>
        )}
      </dl>
    </section>
  );
}

function formatPeriod(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function dotOf(certificate: CertificateStatus): string {
  if (certificate.status === 'active') return certificate.error ? 'dot-warn' : 'dot-ok';
  return certificate.status === 'failed' ? 'dot-bad' : 'dot-warn';
}

function formatUptime(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`;
}
