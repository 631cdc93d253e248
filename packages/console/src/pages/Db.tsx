/**
 * The db browser: tables (db/ListTables), a table's rows in pages (db/Read with limit and
 * offset, db/Count), a query box in M3O's query language, and create, edit and delete of a row
 * as JSON; a new table is made by inserting its first row.
 */
import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { useAction, useLoad, useRoute } from '../hooks';
import { useSession } from '../session';
import { ConfirmButton, Empty, ErrorNotice, Field, formatNumber, JsonEditor, Loading, PageHeader, parseJson } from '../ui';

type DbRecord = Record<string, unknown> & { id?: string };

const PAGE_SIZES = [10, 25, 50, 100];
const MAX_COLUMNS = 8;

export function DbPage() {
  const session = useSession();
  const { params } = useRoute();
  const tables = useLoad(() => session.call<{ tables: string[] }>('db', 'ListTables'), [session.key]);
  const table = params.get('table') ?? '';
  const [creating, setCreating] = useState(false);

  useEffect(() => {
    const names = tables.data?.tables ?? [];
    // Open the first table, unless the user has moved on while the list loaded.
    const stillHere = location.hash.split('?')[0] === '#/db' && !new URLSearchParams(location.hash.split('?')[1] ?? '').get('table');
    if (!table && names.length && !creating && stillHere) location.replace(`#/db?table=${encodeURIComponent(names[0])}`);
  }, [tables.data, table, creating]);

  return (
    <>
      <PageHeader
        title="Database"
        description={
          <>
            JSON records in tables of project <strong>{session.status.key.project}</strong> ({session.status.key.environment}).
          </>
        }
        actions={
          <button type="button" className="button-secondary" onClick={() => setCreating(true)}>
            New table
          </button>
        }
      />
      <ErrorNotice error={tables.error} />
      {creating && (
        <CreateTable
          onCancel={() => setCreating(false)}
          onCreated={(name) => {
            setCreating(false);
            tables.reload();
            location.hash = `#/db?table=${encodeURIComponent(name)}`;
          }}
        />
      )}
      <div className="split">
        <nav className="card table-list" aria-label="Tables">
          <h2 className="small-heading">Tables</h2>
          {tables.loading && !tables.data ? (
            <Loading />
          ) : tables.data?.tables.length ? (
            <ul>
              {tables.data.tables.map((name) => (
                <li key={name}>
                  <a href={`#/db?table=${encodeURIComponent(name)}`} aria-current={name === table ? 'true' : undefined} className={name === table ? 'selected' : undefined}>
                    {name}
                  </a>
                </li>
              ))}
            </ul>
          ) : (
            <p className="muted small">No tables yet: create one by inserting its first row.</p>
          )}
        </nav>
        <div className="split-main">{table ? <TableView key={table} table={table} onDropped={tables.reload} /> : <Empty>Pick a table, or create one.</Empty>}</div>
      </div>
    </>
  );
}

function CreateTable({ onCancel, onCreated }: { onCancel: () => void; onCreated: (name: string) => void }) {
  const session = useSession();
  const [name, setName] = useState('');
  const [text, setText] = useState('{\n  "name": "Ada",\n  "age": 36\n}');
  const create = useAction(async () => {
    const parsed = parseJson(text);
    if (parsed.error) throw new Error(`the first row is not valid JSON: ${parsed.error}`);
    await session.call('db', 'Create', { table: name.trim(), record: parsed.value });
    return name.trim();
  });
  async function submit(event: FormEvent) {
    event.preventDefault();
    const created = await create.run();
    if (created) onCreated(created);
  }
  return (
    <section className="card" aria-labelledby="new-table-title">
      <h2 id="new-table-title">New table</h2>
      <form onSubmit={submit}>
        <Field id="new-table-name" label="Table name" hint="letters, digits and _, starting with a letter or _">
          <input id="new-table-name" value={name} onChange={(event) => setName(event.target.value)} pattern="[A-Za-z_][A-Za-z0-9_]*" maxLength={63} required aria-describedby="new-table-name-hint" autoFocus />
        </Field>
        <JsonEditor id="new-table-row" label="First row (JSON object)" value={text} onChange={setText} rows={6} />
        <div className="row">
          <button type="submit" className="button-primary" disabled={create.busy}>
            Create table
          </button>
          <button type="button" className="button-ghost" onClick={onCancel}>
            Cancel
          </button>
        </div>
      </form>
      <ErrorNotice error={create.error} onDismiss={create.clearError} />
    </section>
  );
}

function TableView({ table, onDropped }: { table: string; onDropped: () => void }) {
  const session = useSession();
  const [queryText, setQueryText] = useState('');
  const [query, setQuery] = useState('');
  const [limit, setLimit] = useState(25);
  const [offset, setOffset] = useState(0);
  const [editing, setEditing] = useState<{ record?: DbRecord } | undefined>();

  const rows = useLoad(async () => {
    const base: Record<string, unknown> = { table };
    if (query) base.query = query;
    const [read, count] = await Promise.all([
      session.call<{ records: DbRecord[] }>('db', 'Read', { ...base, limit, offset }),
      session.call<{ count: number }>('db', 'Count', base),
    ]);
    return { records: read.records, count: count.count, offset };
  }, [table, query, limit, offset, session.key]);

  const remove = useAction((id: string) => session.call('db', 'Delete', { table, id }));
  const drop = useAction(() => session.call('db', 'DropTable', { table }));

  const columns = useMemo(() => {
    const seen = new Set<string>(['id']);
    for (const record of rows.data?.records ?? []) for (const name of Object.keys(record)) seen.add(name);
    return [...seen];
  }, [rows.data]);
  const shown = columns.slice(0, MAX_COLUMNS);
  const total = rows.data?.count ?? 0;
  // From the page on screen, not the one asked for, so the range never runs ahead of the rows.
  const shownOffset = rows.data?.offset ?? 0;
  const first = total === 0 || !rows.data?.records.length ? 0 : shownOffset + 1;
  const last = Math.min(shownOffset + (rows.data?.records.length ?? 0), total);

  function submitQuery(event: FormEvent) {
    event.preventDefault();
    setOffset(0);
    setQuery(queryText.trim());
  }

  return (
    <section className="card" aria-labelledby="table-title">
      <div className="section-head">
        <h2 id="table-title">
          <code>{table}</code>
        </h2>
        <div className="row">
          <button type="button" className="button-primary small" onClick={() => setEditing({})}>
            New row
          </button>
          <ConfirmButton
            label="Drop table"
            confirmLabel={`Drop ${table} and all its rows`}
            busy={drop.busy}
            onConfirm={async () => {
              const dropped = await drop.run();
              if (dropped) {
                onDropped();
                location.hash = '#/db';
              }
            }}
          />
        </div>
      </div>
      <form className="query-form" onSubmit={submitQuery} role="search" aria-label="Query rows">
        <label htmlFor="db-query" className="visually-hidden">
          Query
        </label>
        <input
          id="db-query"
          className="code"
          placeholder={`age >= 18 and (city == 'Paris' or tags in ['a','b'])`}
          value={queryText}
          onChange={(event) => setQueryText(event.target.value)}
        />
        <button type="submit" className="button-secondary">
          Query
        </button>
        {query && (
          <button
            type="button"
            className="button-ghost"
            onClick={() => {
              setQueryText('');
              setQuery('');
              setOffset(0);
            }}
          >
            Clear
          </button>
        )}
      </form>
      <ErrorNotice error={rows.error} />
      <ErrorNotice error={remove.error} onDismiss={remove.clearError} />
      <ErrorNotice error={drop.error} onDismiss={drop.clearError} />
      {editing && (
        <RowEditor
          table={table}
          record={editing.record}
          onClose={() => setEditing(undefined)}
          onSaved={() => {
            setEditing(undefined);
            rows.reload();
          }}
        />
      )}
      {rows.loading && !rows.data ? (
        <Loading />
      ) : rows.data && rows.data.records.length === 0 ? (
        <Empty>{query ? 'No row matches this query.' : 'This table is empty.'}</Empty>
      ) : (
        <div className="table-wrap" aria-busy={rows.loading}>
          <table className="data-table">
            <thead>
              <tr>
                {shown.map((name) => (
                  <th scope="col" key={name}>
                    {name}
                  </th>
                ))}
                {columns.length > shown.length && <th scope="col">…</th>}
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.data?.records.map((record) => (
                <tr key={String(record.id)} data-row-id={String(record.id)}>
                  {shown.map((name) => (
                    <td key={name} className={name === 'id' ? 'mono' : undefined}>
                      <Cell value={record[name]} />
                    </td>
                  ))}
                  {columns.length > shown.length && <td className="muted">+{columns.length - shown.length}</td>}
                  <td className="actions">
                    <button type="button" className="button-secondary small" onClick={() => setEditing({ record })} aria-label={`Edit row ${String(record.id)}`}>
                      Edit
                    </button>
                    <ConfirmButton
                      label="Delete"
                      confirmLabel="Delete row"
                      busy={remove.busy}
                      onConfirm={async () => {
                        await remove.run(String(record.id));
                        rows.reload();
                      }}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="pager" aria-label="Pages">
        <span className="muted" aria-live="polite" data-testid="page-range">
          {first}–{last} of {formatNumber(total)}
        </span>
        <label className="inline-field" htmlFor="db-page-size">
          Rows per page
          <select
            id="db-page-size"
            value={limit}
            onChange={(event) => {
              setLimit(Number(event.target.value));
              setOffset(0);
            }}
          >
            {PAGE_SIZES.map((size) => (
              <option key={size}>{size}</option>
            ))}
          </select>
        </label>
        <button type="button" className="button-secondary small" disabled={offset === 0 || rows.loading} onClick={() => setOffset(Math.max(0, offset - limit))}>
          Previous
        </button>
        <button type="button" className="button-secondary small" disabled={offset + limit >= total || rows.loading} onClick={() => setOffset(offset + limit)}>
          Next
        </button>
      </div>
    </section>
  );
}

function Cell({ value }: { value: unknown }) {
  if (value === undefined) return <span className="muted">—</span>;
  if (value === null) return <span className="muted">null</span>;
  if (typeof value === 'object') return <code className="cell-json">{JSON.stringify(value)}</code>;
  if (typeof value === 'boolean') return <code>{String(value)}</code>;
  return <>{String(value)}</>;
}

function RowEditor({ table, record, onClose, onSaved }: { table: string; record?: DbRecord; onClose: () => void; onSaved: () => void }) {
  const session = useSession();
  const [text, setText] = useState(() => JSON.stringify(record ?? { name: '' }, null, 2));
  const save = useAction(async () => {
    const parsed = parseJson(text);
    if (parsed.error) throw new Error(`not valid JSON: ${parsed.error}`);
    if (record) return session.call('db', 'Update', { table, id: String(record.id), record: parsed.value });
    return session.call('db', 'Create', { table, record: parsed.value });
  });
  return (
    <form
      className="row-editor"
      aria-label={record ? `Edit row ${String(record.id)}` : 'New row'}
      onSubmit={async (event) => {
        event.preventDefault();
        if (await save.run()) onSaved();
      }}
    >
      <JsonEditor id="row-json" label={record ? `Row ${String(record.id)} (fields left out are kept)` : 'New row (JSON object; an "id" field sets its id)'} value={text} onChange={setText} rows={8} />
      <div className="row">
        <button type="submit" className="button-primary" disabled={save.busy}>
          {record ? 'Save row' : 'Insert row'}
        </button>
        <button type="button" className="button-ghost" onClick={onClose}>
          Cancel
        </button>
      </div>
      <ErrorNotice error={save.error} onDismiss={save.clearError} />
    </form>
  );
}
