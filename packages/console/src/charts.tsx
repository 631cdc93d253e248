/** Charts drawn as plain SVG: bars by day, and horizontal bars by name. */

export interface DayValue {
  day: string;
  value: number;
  /** Said with the value when the bar is pointed at (the day's cost, say). */
  note?: string;
}

/** Vertical bars, one per day; the SVG scales to its container's width. */
export function DayBars({
  data,
  label,
  format = String,
  smallestScale = 1,
}: {
  data: DayValue[];
  label: string;
  format?: (value: number) => string;
  /** The top of the scale when every value is below it (counts start at 1; GB-seconds can be 0.2). */
  smallestScale?: number;
}) {
  const width = 560;
  const height = 200;
  const top = 16;
  const bottom = 22;
  const left = 8;
  const max = Math.max(smallestScale, ...data.map((entry) => entry.value));
  const step = (width - left * 2) / Math.max(1, data.length);
  const barWidth = Math.max(2, step * 0.7);
  const plotHeight = height - top - bottom;
  const total = data.reduce((sum, entry) => sum + entry.value, 0);
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${label}: ${format(total)} in total, at most ${format(max)} on one day`} >
        <line x1={left} x2={width - left} y1={top + plotHeight} y2={top + plotHeight} className="chart-axis" />
        <line x1={left} x2={width - left} y1={top} y2={top} className="chart-grid" />
        <text x={width - left} y={top - 4} textAnchor="end" className="chart-label">
          {format(max)}
        </text>
        {data.map((entry, index) => {
          const barHeight = (entry.value / max) * plotHeight;
          const x = left + index * step + (step - barWidth) / 2;
          const dayNumber = Number(entry.day.slice(8));
          return (
            <g key={entry.day}>
              <rect x={x} y={top + plotHeight - barHeight} width={barWidth} height={Math.max(entry.value > 0 ? 1.5 : 0, barHeight)} rx={1.5} className="chart-bar">
                <title>{`${entry.day}: ${format(entry.value)}${entry.note ? ` · ${entry.note}` : ''}`}</title>
              </rect>
              {(dayNumber === 1 || dayNumber % 5 === 0) && (
                <text x={x + barWidth / 2} y={height - 6} textAnchor="middle" className="chart-label">
                  {dayNumber}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption className="muted small">{label}</figcaption>
    </figure>
  );
}

export interface NamedValue {
  name: string;
  value: number;
  note?: string;
}

/** Horizontal bars, largest first, with the value (and a note such as the cost) beside each. */
export function NamedBars({ data, label, format = String }: { data: NamedValue[]; label: string; format?: (value: number) => string }) {
  const max = Math.max(1, ...data.map((entry) => entry.value));
  return (
    <figure className="chart">
      <ul className="hbars" aria-label={label}>
        {data.map((entry) => (
          <li key={entry.name} className="hbar" data-name={entry.name}>
            <span className="hbar-name">{entry.name}</span>
            <svg className="hbar-track" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
              <rect x={0} y={0} width={100} height={10} rx={2} className="chart-track" />
              <rect x={0} y={0} width={Math.max(1, (entry.value / max) * 100)} height={10} rx={2} className="chart-bar" />
            </svg>
            <span className="hbar-value">
              {format(entry.value)}
              {entry.note && <span className="muted"> · {entry.note}</span>}
            </span>
          </li>
        ))}
      </ul>
      <figcaption className="muted small">{label}</figcaption>
    </figure>
  );
}
