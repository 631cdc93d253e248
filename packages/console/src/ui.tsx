/**
 * Shared pieces of the console's pages: headers, error and loading notices, a two-step
 * confirm button, a copy button, labelled fields, `NAME=value` lines, a JSON editor, and formatters.
 */
import { useEffect, useId, useState, type ReactNode } from 'react';
import { ApiError } from './api';

export function PageHeader({ title, description, actions }: { title: string; description?: ReactNode; actions?: ReactNode }) {
  return (
    <header className="page-header">
      <div>
        <h1 tabIndex={-1} id="page-title">
          {title}
        </h1>
        {description && <p className="muted">{description}</p>}
      </div>
      {actions && <div className="page-actions">{actions}</div>}
    </header>
  );
}

/** The API's error as it came: its detail, status and request id; never a blank page. */
export function ErrorNotice({ error, onDismiss }: { error: unknown; onDismiss?: () => void }) {
  if (!error) return null;
  const apiError = error instanceof ApiError ? error : undefined;
  const detail = apiError ? apiError.detail : error instanceof Error ? error.message : String(error);
  return (
    <div className="notice notice-error" role="alert">
      <div>
        {apiError && apiError.status > 0 && <strong className="notice-code">{apiError.status} {apiError.code}</strong>}
        <span className="notice-detail">{detail}</span>
        {apiError?.requestId && <span className="muted small"> (request {apiError.requestId})</span>}
      </div>
      {onDismiss && (
        <button type="button" className="button-ghost small" onClick={onDismiss} aria-label="Dismiss the error">
          ✕
        </button>
      )}
    </div>
  );
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <div className="loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

/** A destructive action in two steps: the first press asks, the second does it. */
export function ConfirmButton({
  label,
  confirmLabel,
  onConfirm,
  busy,
  className = 'button-danger',
}: {
  label: string;
  confirmLabel: string;
  onConfirm: () => void | Promise<unknown>;
  busy?: boolean;
  className?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button type="button" className={`${className} small`} onClick={() => setAsking(true)} disabled={busy}>
        {label}
      </button>
    );
  }
  return (
    <span className="confirm" role="group" aria-label={confirmLabel}>
      <button
        type="button"
        className="button-danger-solid small"
        autoFocus
        disabled={busy}
        onClick={async () => {
          await onConfirm();
          setAsking(false);
        }}
      >
        {confirmLabel}
      </button>
      <button type="button" className="button-ghost small" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [copied, setCopied] = useState<'idle' | 'copied' | 'failed'>('idle');
  useEffect(() => {
    if (copied === 'idle') return;
    const timer = setTimeout(() => setCopied('idle'), 2000);
    return () => clearTimeout(timer);
  }, [copied]);
  return (
    <button
      type="button"
      className="button-secondary small"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setCopied('copied');
        } catch {
          setCopied('failed');
        }
      }}
    >
      <span aria-live="polite">{copied === 'copied' ? 'Copied' : copied === 'failed' ? 'Select and copy' : label}</span>
    </button>
  );
}

/** A label above its control, with an optional hint tied to it. */
export function Field({ label, hint, children, id }: { label: string; hint?: ReactNode; id: string; children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children}
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
    </div>
  );
}

/** Parses JSON text; returns the value or the parse error's message. */
export function parseJson(text: string): { value?: unknown; error?: string } {
  if (!text.trim()) return { value: {} };
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/** `KEY=value` lines into an object; blank lines and # comments are skipped. */
export function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) continue;
    const equals = trimmed.indexOf('=');
    if (equals <= 0) throw new Error(`environment line "${trimmed}" is not NAME=value`);
    env[trimmed.slice(0, equals).trim()] = trimmed.slice(equals + 1);
  }
  return env;
}

/** A textarea for JSON that says when the text is not valid JSON. */
export function JsonEditor({
  label,
  value,
  onChange,
  rows = 8,
  id,
}: {
  label: string;
  value: string;
  onChange: (text: string) => void;
  rows?: number;
  id?: string;
}) {
  const generated = useId();
  const editorId = id ?? generated;
  const { error } = parseJson(value);
  return (
    <div className="field">
      <label htmlFor={editorId}>{label}</label>
      <textarea
        id={editorId}
        className="code"
        rows={rows}
        spellCheck={false}
        value={value}
        aria-invalid={Boolean(error)}
        aria-describedby={error ? `${editorId}-error` : undefined}
        onChange={(event) => onChange(event.target.value)}
      />
      {error && (
        <p className="hint hint-error" id={`${editorId}-error`}>
          Not valid JSON: {error}
        </p>
      )}
    </div>
  );
}

export const formatNumber = (value: number) => new Intl.NumberFormat().format(value);

/** Micro-units as an amount of the currency: 1234567 → "1.234567". */
export function formatMicros(micros: number, currency = ''): string {
  const amount = micros / 1_000_000;
  const text = amount === 0 ? '0' : amount < 0.01 ? amount.toFixed(6).replace(/0+$/, '') : amount.toFixed(2);
  return currency ? `${text} ${currency}` : text;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDate(text: string | undefined): string {
  if (!text) return '—';
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}
