/**
 * Usage of a project: the month's calls, errors, compute and cost with the free credit
 * (usage/Summary), calls by day and by service and compute (GB-seconds of apps and functions)
 * by day and by app with their cost (usage/Read), the limits in force, and the instance's price
 * list (usage/Prices).
 */
import { useEffect, useMemo, useState } from 'react';
import { DayBars, NamedBars } from '../charts';
import { useLoad } from '../hooks';
import { useSession } from '../session';
import { Empty, ErrorNotice, formatMicros, formatNumber, Loading, PageHeader } from '../ui';
import type { ProjectView } from './Projects';

interface UsageRow {
  day: string;
  service: string;
  endpoint: string;
  calls: number;
  errors: number;
  price_micros: number;
}

/** Compute of one app (a function is the app of its name) on one day. */
interface ComputeRow {
  day: string;
  app: string;
  running_ms: number;
  /** Running milliseconds × MiB: {@link MIB_MS_PER_GB_SECOND} of them are one GB-second. */
  mib_ms: number;
  requests: number;
  price_micros: number;
}

/** A GB-second is 1024 MiB for 1000 ms. */
const MIB_MS_PER_GB_SECOND = 1024 * 1000;

const gbSecondsOf = (mibMs: number) => mibMs / MIB_MS_PER_GB_SECOND;

/** GB-seconds readable at any size: 0.0042, 3.27, 1,024. */
function formatGbSeconds(value: number): string {
  if (value === 0) return '0';
  if (value < 0.01) return value.toFixed(4);
  if (value < 100) return value.toFixed(2);
  return formatNumber(Math.round(value));
}

interface Summary {
  project: string;
  month: string;
  currency: string;
  calls: number;
  errors: number;
  bytes_in: number;
  bytes_out: number;
  endpoints: { service: string; endpoint: string; calls: number; errors: number; price_micros: number }[];
  compute: { running_ms: number; mib_ms: number; requests: number; price_micros: number };
  requests_micros: number;
  compute_micros: number;
  total_micros: number;
  free_credit_micros: number;
  due_micros: number;
  due: string;
  limits: Record<string, number>;
}

interface Prices {
  currency: string;
  unit: string;
  requests: { service: string; endpoint: string; price_micros: number; price: string }[];
  compute: { gb_second_micros: number; request_micros: number };
}

function thisMonth(): string {
  return new Date().toISOString().slice(0, 7);
}

/** Every day of the month up to today (or to its end for a past month). */
function daysOf(month: string): string[] {
  const [year, monthNumber] = month.split('-').map(Number);
  const last = new Date(Date.UTC(year, monthNumber, 0)).getUTCDate();
  const today = new Date().toISOString().slice(0, 10);
  const days: string[] = [];
  for (let day = 1; day <= last; day++) {
    const text = `${month}-${String(day).padStart(2, '0')}`;
    if (text > today) break;
    days.push(text);
  }
  return days;
}

export function UsagePage() {
  const session = useSession();
  const [project, setProject] = useState(session.status.key.project);
  const [month, setMonth] = useState(thisMonth);
  const projects = useLoad(
    async () => (session.canManage ? (await session.call<{ projects: ProjectView[] }>('projects', 'List')).projects.map((entry) => entry.name) : [session.status.key.project]),
    [session.key],
  );
  const usage = useLoad(async () => {
    const days = daysOf(month);
    const [summary, read] = await Promise.all([
      session.call<Summary>('usage', 'Summary', { project, month }),
      days.length
        ? session.call<{ usage: UsageRow[]; compute: ComputeRow[] }>('usage', 'Read', { project, from: days[0], to: days[days.length - 1] })
        : Promise.resolve({ usage: [], compute: [] }),
    ]);
    return { summary, rows: read.usage, compute: read.compute, days };
  }, [project, month, session.key]);

  useEffect(() => {
    const names = projects.data ?? [];
    if (names.length && !names.includes(project)) setProject(names[0]);
  }, [projects.data, project]);

  const byDay = useMemo(() => {
    const totals = new Map<string, number>((usage.data?.days ?? []).map((day) => [day, 0]));
    for (const row of usage.data?.rows ?? []) totals.set(row.day, (totals.get(row.day) ?? 0) + row.calls);
    return [...totals.entries()].map(([day, value]) => ({ day, value }));
  }, [usage.data]);

  const byService = useMemo(() => {
    const totals = new Map<string, { calls: number; micros: number }>();
    for (const row of usage.data?.rows ?? []) {
      const total = totals.get(row.service) ?? { calls: 0, micros: 0 };
      total.calls += row.calls;
      total.micros += row.price_micros;
      totals.set(row.service, total);
    }
    const currency = usage.data?.summary.currency ?? '';
    return [...totals.entries()]
      .sort((a, b) => b[1].calls - a[1].calls)
      .map(([name, total]) => ({ name, value: total.calls, note: formatMicros(total.micros, currency) }));
  }, [usage.data]);

  const computeByDay = useMemo(() => {
    const totals = new Map<string, { mibMs: number; micros: number }>((usage.data?.days ?? []).map((day) => [day, { mibMs: 0, micros: 0 }]));
    for (const row of usage.data?.compute ?? []) {
      const total = totals.get(row.day) ?? { mibMs: 0, micros: 0 };
      total.mibMs += row.mib_ms;
      total.micros += row.price_micros;
      totals.set(row.day, total);
    }
    const currency = usage.data?.summary.currency ?? '';
    return [...totals.entries()].map(([day, total]) => ({ day, value: gbSecondsOf(total.mibMs), note: formatMicros(total.micros, currency) }));
  }, [usage.data]);

  const computeByApp = useMemo(() => {
    const totals = new Map<string, { mibMs: number; micros: number }>();
    for (const row of usage.data?.compute ?? []) {
      const total = totals.get(row.app) ?? { mibMs: 0, micros: 0 };
      total.mibMs += row.mib_ms;
      total.micros += row.price_micros;
      totals.set(row.app, total);
    }
    const currency = usage.data?.summary.currency ?? '';
    return [...totals.entries()]
      .sort((a, b) => b[1].mibMs - a[1].mibMs)
      .map(([name, total]) => ({ name, value: gbSecondsOf(total.mibMs), note: formatMicros(total.micros, currency) }));
  }, [usage.data]);

  const summary = usage.data?.summary;
  return (
    <>
      <PageHeader
        title="Usage"
        description="Calls, compute, errors and cost by day, by service and by app. Errors and suspended time are not charged; the free credit comes off each month's cost."
        actions={
          <button type="button" className="button-secondary" onClick={usage.reload} disabled={usage.loading}>
            {usage.loading ? 'Refreshing…' : 'Refresh'}
          </button>
        }
      />
      <div className="row filters">
        <label className="inline-field" htmlFor="usage-project">
          Project
          <select id="usage-project" value={project} onChange={(event) => setProject(event.target.value)} disabled={!session.canManage}>
            {(projects.data ?? [project]).map((name) => (
              <option key={name}>{name}</option>
            ))}
          </select>
        </label>
        <label className="inline-field" htmlFor="usage-month">
          Month
          <input id="usage-month" type="month" value={month} max={thisMonth()} onChange={(event) => event.target.value && setMonth(event.target.value)} />
        </label>
      </div>
      <ErrorNotice error={projects.error} />
      <ErrorNotice error={usage.error} />
      {usage.loading && !usage.data ? (
        <Loading />
      ) : (
        summary && (
          <>
            <section className="cards" aria-label="This month">
              <div className="card stat">
                <span className="stat-label">Calls</span>
                <span className="stat-value" data-testid="usage-calls">
                  {formatNumber(summary.calls)}
                </span>
                <span className="muted small">{formatNumber(summary.errors)} errors</span>
              </div>
              <div className="card stat">
                <span className="stat-label">Cost</span>
                <span className="stat-value">
                  {formatMicros(summary.total_micros)} <span className="unit">{summary.currency}</span>
                </span>
                <span className="muted small">
                  calls {formatMicros(summary.requests_micros)} + compute {formatMicros(summary.compute_micros)}; free credit {formatMicros(summary.free_credit_micros, summary.currency)}
                </span>
              </div>
              <div className="card stat">
                <span className="stat-label">Compute</span>
                <span className="stat-value" data-testid="usage-compute">
                  {formatGbSeconds(gbSecondsOf(summary.compute.mib_ms))} <span className="unit">GB-s</span>
                </span>
                <span className="muted small">
                  {formatNumber(Math.round(summary.compute.running_ms / 1000))} s running, {formatNumber(summary.compute.requests)} requests, {formatMicros(summary.compute_micros, summary.currency)}
                </span>
              </div>
              <div className="card stat">
                <span className="stat-label">Due</span>
                <span className="stat-value">
                  {summary.due} <span className="unit">{summary.currency}</span>
                </span>
                <span className="muted small">after the free credit</span>
              </div>
              <div className="card stat">
                <span className="stat-label">Quota</span>
                <span className="stat-value">{summary.limits.monthly_quota ? `${Math.round((summary.calls / summary.limits.monthly_quota) * 100)}%` : 'none'}</span>
                <span className="muted small">
                  {summary.limits.monthly_quota ? `${formatNumber(summary.calls)} of ${formatNumber(summary.limits.monthly_quota)} calls` : 'no monthly quota'}
                  {summary.limits.rate_limit ? `, ${summary.limits.rate_limit}/s` : ''}
                </span>
              </div>
            </section>
            <div className="two-columns">
              <section className="card" aria-labelledby="by-day-title">
                <h2 id="by-day-title">Calls by day</h2>
                <DayBars data={byDay} label={`Calls per day, ${month} (UTC)`} format={formatNumber} />
              </section>
              <section className="card" aria-labelledby="by-service-title">
                <h2 id="by-service-title">By service</h2>
                {byService.length ? <NamedBars data={byService} label="Calls and cost per service" format={formatNumber} /> : <Empty>No calls this month.</Empty>}
              </section>
            </div>
            <div className="two-columns">
              <section className="card" aria-labelledby="compute-by-day-title">
                <h2 id="compute-by-day-title">Compute by day</h2>
                <DayBars data={computeByDay} label={`GB-seconds of running apps and functions per day, ${month} (UTC), ${formatMicros(summary.compute_micros, summary.currency)} in all; suspended time is free`} format={formatGbSeconds} smallestScale={0.01} />
              </section>
              <section className="card" aria-labelledby="compute-by-app-title">
                <h2 id="compute-by-app-title">Compute by app</h2>
                {computeByApp.length ? (
                  <div data-testid="usage-compute-apps">
                    <NamedBars data={computeByApp} label="GB-seconds and cost per app (a function is the app of its name)" format={formatGbSeconds} />
                  </div>
                ) : (
                  <Empty>No compute this month.</Empty>
                )}
              </section>
            </div>
            <section className="card" aria-labelledby="by-endpoint-title">
              <h2 id="by-endpoint-title">By endpoint</h2>
              {summary.endpoints.length === 0 ? (
                <Empty>No calls this month.</Empty>
              ) : (
                <div className="table-wrap">
                  <table className="compact" data-testid="usage-endpoints">
                    <thead>
                      <tr>
                        <th scope="col">Endpoint</th>
                        <th scope="col" className="number">
                          Calls
                        </th>
                        <th scope="col" className="number">
                          Errors
                        </th>
                        <th scope="col" className="number">
                          Cost ({summary.currency})
                        </th>
                      </tr>
                    </thead>
                    <tbody>
                      {summary.endpoints.map((entry) => (
                        <tr key={`${entry.service}/${entry.endpoint}`}>
                          <th scope="row">
                            <code>
                              {entry.service}/{entry.endpoint}
                            </code>
                          </th>
                          <td className="number">{formatNumber(entry.calls)}</td>
                          <td className="number">{formatNumber(entry.errors)}</td>
                          <td className="number">{formatMicros(entry.price_micros)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
            </section>
          </>
        )
      )}
      <PriceList />
    </>
  );
}

function PriceList() {
  const session = useSession();
  const prices = useLoad(() => session.call<Prices>('usage', 'Prices'), [session.key]);
  const [filter, setFilter] = useState('');
  const rows = (prices.data?.requests ?? []).filter((row) => `${row.service}/${row.endpoint}`.toLowerCase().includes(filter.trim().toLowerCase()));
  return (
    <section className="card" aria-labelledby="prices-title">
      <details>
        <summary>
          <h2 id="prices-title" className="inline-heading">
            Price list
          </h2>
        </summary>
        <ErrorNotice error={prices.error} />
        {prices.data && (
          <>
            <p className="muted small">
              Prices in {prices.data.currency} per call; compute {formatMicros(prices.data.compute.gb_second_micros, prices.data.currency)} per GB-second and{' '}
              {formatMicros(prices.data.compute.request_micros, prices.data.currency)} per app request.
            </p>
            <label htmlFor="price-filter" className="visually-hidden">
              Filter prices
            </label>
            <input id="price-filter" type="search" placeholder="Filter, e.g. db/" value={filter} onChange={(event) => setFilter(event.target.value)} />
            <div className="table-wrap scroll-y">
              <table className="compact">
                <thead>
                  <tr>
                    <th scope="col">Endpoint</th>
                    <th scope="col" className="number">
                      Price
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((row) => (
                    <tr key={`${row.service}/${row.endpoint}`}>
                      <th scope="row">
                        <code>
                          {row.service}/{row.endpoint}
                        </code>
                      </th>
                      <td className="number">{row.price_micros === 0 ? 'free' : row.price}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </>
        )}
      </details>
    </section>
  );
}
