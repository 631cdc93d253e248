/** Cron jobs of the project with their last runs (cron/Jobs); schedule and delete jobs. */
import { useState, type FormEvent } from 'react';
import { useAction, useLoad } from '../hooks';
import { useSession } from '../session';
import { ConfirmButton, Empty, ErrorNotice, Field, formatDate, Loading, PageHeader } from '../ui';

interface CronRun {
  scheduled: string;
  finished: string;
  status: 'succeeded' | 'failed' | 'refused';
  code: number;
  attempts: number;
  error: string;
}

interface CronJob {
  id: string;
  name: string;
  description: string;
  interval: string;
  callback: string;
  next: string;
  runs: CronRun[];
}

export function CronPage() {
  const session = useSession();
  const jobs = useLoad(() => session.call<{ jobs: CronJob[] }>('cron', 'Jobs'), [session.key]);
  const remove = useAction((id: string) => session.call('cron', 'Delete', { id }));
  return (
    <>
      <PageHeader title="Cron" description="Jobs that POST a signed request to your URL on a schedule (cron syntax, UTC), with their last runs." />
      <ScheduleJob onScheduled={jobs.reload} />
      <section className="card" aria-labelledby="jobs-title">
        <div className="section-head">
          <h2 id="jobs-title">Jobs</h2>
          <button type="button" className="button-ghost small" onClick={jobs.reload} disabled={jobs.loading}>
            Refresh
          </button>
        </div>
        <ErrorNotice error={jobs.error} />
        <ErrorNotice error={remove.error} onDismiss={remove.clearError} />
        {jobs.loading && !jobs.data ? (
          <Loading />
        ) : !jobs.data?.jobs.length ? (
          <Empty>No cron jobs yet.</Empty>
        ) : (
          <ul className="job-list">
            {jobs.data.jobs.map((job) => (
              <li key={job.id} className="job">
                <div className="section-head">
                  <div>
                    <h3>{job.name}</h3>
                    <p className="muted small">
                      <code>{job.interval}</code> → <span className="ellipsis">{job.callback}</span>
                      {job.description && <> · {job.description}</>}
                    </p>
                  </div>
                  <div className="row">
                    <span className="muted small">next {job.next ? formatDate(job.next) : 'never'}</span>
                    <ConfirmButton
                      label="Delete"
                      confirmLabel={`Delete ${job.name}`}
                      busy={remove.busy}
                      onConfirm={async () => {
                        await remove.run(job.id);
                        jobs.reload();
                      }}
                    />
                  </div>
                </div>
                {job.runs.length === 0 ? (
                  <p className="muted small">No runs yet.</p>
                ) : (
                  <div className="table-wrap">
                    <table className="compact">
                      <thead>
                        <tr>
                          <th scope="col">Due</th>
                          <th scope="col">Result</th>
                          <th scope="col">HTTP</th>
                          <th scope="col">Attempts</th>
                          <th scope="col">Error</th>
                        </tr>
                      </thead>
                      <tbody>
                        {job.runs.map((run) => (
                          <tr key={run.scheduled}>
                            <td>{formatDate(run.scheduled)}</td>
                            <td>
                              <span className={`status status-${run.status === 'succeeded' ? 'active' : 'revoked'}`}>{run.status}</span>
                            </td>
                            <td>{run.code || '—'}</td>
                            <td>{run.attempts}</td>
                            <td className="muted small">{run.error || ''}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                  </div>
                )}
              </li>
            ))}
          </ul>
        )}
      </section>
    </>
  );
}

function ScheduleJob({ onScheduled }: { onScheduled: () => void }) {
  const session = useSession();
  const [name, setName] = useState('');
  const [interval, setInterval] = useState('*/5 * * * *');
  const [callback, setCallback] = useState('https://');
  const [description, setDescription] = useState('');
  const schedule = useAction(() => session.call('cron', 'Schedule', { name, interval, callback, description }));
  async function submit(event: FormEvent) {
    event.preventDefault();
    if (await schedule.run()) {
      setName('');
      setDescription('');
      onScheduled();
    }
  }
  return (
    <section className="card" aria-labelledby="schedule-title">
      <h2 id="schedule-title">Schedule a job</h2>
      <form className="form-grid" onSubmit={submit}>
        <Field id="cron-name" label="Name">
          <input id="cron-name" value={name} onChange={(event) => setName(event.target.value)} required />
        </Field>
        <Field id="cron-interval" label="Schedule" hint="minute hour day month weekday, UTC">
          <input id="cron-interval" className="code" value={interval} onChange={(event) => setInterval(event.target.value)} required aria-describedby="cron-interval-hint" />
        </Field>
        <Field id="cron-callback" label="Callback URL">
          <input id="cron-callback" type="url" value={callback} onChange={(event) => setCallback(event.target.value)} required />
        </Field>
        <Field id="cron-description" label="Description">
          <input id="cron-description" value={description} onChange={(event) => setDescription(event.target.value)} />
        </Field>
        <div className="form-actions">
          <button type="submit" className="button-primary" disabled={schedule.busy}>
            Schedule
          </button>
        </div>
      </form>
      <ErrorNotice error={schedule.error} onDismiss={schedule.clearError} />
    </section>
  );
}
