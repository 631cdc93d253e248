/**
 * The API explorer, generated from `/v1/openapi.json`: pick a service and endpoint (searchable),
 * edit the JSON request (prefilled with the endpoint's example), run it, and see the response
 * with its status and time, and the same call as curl, SDK and CLI.
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import { callRaw, listEndpoints, loadOpenApi, openStream, resolveSchema, type EndpointInfo, type JsonSchema, type OpenApiDocument, type RawResult } from '../api';
import { useLoad, useRoute } from '../hooks';
import { useSession } from '../session';
import { cliSnippet, curlSnippet, sdkSnippet } from '../snippets';
import { CopyButton, ErrorNotice, JsonEditor, Loading, PageHeader, parseJson } from '../ui';

export function ExplorerPage() {
  const document = useLoad(loadOpenApi, []);
  return (
    <>
      <PageHeader title="API explorer" description="Every endpoint of this instance, from its OpenAPI document. Requests run with your key." />
      <ErrorNotice error={document.error} />
      {document.loading && !document.data ? <Loading label="Reading the OpenAPI document…" /> : document.data && <Explorer document={document.data} />}
    </>
  );
}

function Explorer({ document }: { document: OpenApiDocument }) {
  const { params } = useRoute();
  const endpoints = useMemo(() => listEndpoints(document), [document]);
  const [search, setSearch] = useState('');
  const service = params.get('service') ?? 'id';
  const endpointName = params.get('endpoint') ?? endpoints.find((entry) => entry.service === service)?.endpoint ?? '';
  const selected = endpoints.find((entry) => entry.service === service && entry.endpoint === endpointName);

  const groups = useMemo(() => {
    const needle = search.trim().toLowerCase();
    const matching = endpoints.filter(
      (entry) =>
        !needle ||
        `${entry.service}/${entry.endpoint}`.toLowerCase().includes(needle) ||
        (entry.operation.summary ?? '').toLowerCase().includes(needle),
    );
    const byService = new Map<string, EndpointInfo[]>();
    for (const entry of matching) byService.set(entry.service, [...(byService.get(entry.service) ?? []), entry]);
    return [...byService.entries()].sort(([a], [b]) => a.localeCompare(b));
  }, [endpoints, search]);

  return (
    <div className="explorer">
      <aside className="card explorer-list" aria-label="Endpoints">
        <label htmlFor="endpoint-search" className="visually-hidden">
          Search endpoints
        </label>
        <input id="endpoint-search" type="search" placeholder="Search endpoints…" value={search} onChange={(event) => setSearch(event.target.value)} />
        <div className="endpoint-groups">
          {groups.length === 0 && <p className="muted small">No endpoint matches “{search}”.</p>}
          {groups.map(([name, entries]) => (
            <details key={name} open={Boolean(search) || name === service}>
              <summary>{name}</summary>
              <ul>
                {entries.map((entry) => {
                  const current = entry === selected;
                  return (
                    <li key={entry.endpoint}>
                      <a
                        href={`#/explorer?service=${entry.service}&endpoint=${entry.endpoint}`}
                        aria-current={current ? 'true' : undefined}
                        className={current ? 'selected' : undefined}
                      >
                        {entry.endpoint}
                        {entry.operation['x-alto-stream'] && <span className="tag tag-small">stream</span>}
                      </a>
                    </li>
                  );
                })}
              </ul>
            </details>
          ))}
        </div>
      </aside>
      <div className="explorer-main">{selected ? <EndpointRunner key={`${selected.service}/${selected.endpoint}`} document={document} entry={selected} /> : <p>Pick an endpoint.</p>}</div>
    </div>
  );
}

interface RunState {
  result?: RawResult;
  messages?: unknown[];
  streaming?: boolean;
  error?: unknown;
}

const MAX_STREAM_MESSAGES = 200;

function EndpointRunner({ document, entry }: { document: OpenApiDocument; entry: EndpointInfo }) {
  const session = useSession();
  const [text, setText] = useState(() => JSON.stringify(entry.example ?? {}, null, 2));
  const [run, setRun] = useState<RunState>({});
  const [busy, setBusy] = useState(false);
  const [snippet, setSnippet] = useState<'curl' | 'sdk' | 'cli'>('curl');
  const closeStream = useRef<() => void>(undefined);
  const parsed = parseJson(text);
  const stream = entry.operation['x-alto-stream'] === true;
  const started = useRef(0);
  const [elapsed, setElapsed] = useState(0);

  useEffect(() => () => closeStream.current?.(), []);

  async function execute() {
    if (parsed.error) return;
    setBusy(true);
    setRun({});
    if (stream) {
      const messages: unknown[] = [];
      started.current = performance.now();
      setRun({ messages: [], streaming: true });
      closeStream.current = openStream(session.key, entry.service, entry.endpoint, parsed.value, {
        onMessage(message) {
          if (messages.length >= MAX_STREAM_MESSAGES) return;
          messages.push(message);
          setRun((current) => ({ ...current, messages: [...messages] }));
          if (messages.length === MAX_STREAM_MESSAGES) closeStream.current?.();
        },
        onError(error) {
          setRun((current) => ({ ...current, error }));
        },
        onClose() {
          setElapsed(performance.now() - started.current);
          setRun((current) => ({ ...current, streaming: false }));
          setBusy(false);
        },
      });
      return;
    }
    try {
      const result = await callRaw(session.key, entry.service, entry.endpoint, parsed.value);
      setRun({ result });
    } catch (error) {
      setRun({ error });
    } finally {
      setBusy(false);
    }
  }

  const origin = location.origin;
  const snippetInput = { origin, service: entry.service, endpoint: entry.endpoint, body: parsed.value ?? {}, stream };
  const snippetText = snippet === 'curl' ? curlSnippet(snippetInput) : snippet === 'sdk' ? sdkSnippet(snippetInput) : cliSnippet(snippetInput);
  const price = entry.operation['x-alto-price-micros'];

  return (
    <>
      <section className="card" aria-labelledby="endpoint-title">
        <div className="section-head">
          <h2 id="endpoint-title">
            <code>
              {entry.service}/{entry.endpoint}
            </code>
          </h2>
          <div className="row">
            {stream && <span className="tag">websocket stream</span>}
            <span className="tag">{entry.operation['x-alto-access'] ?? 'key'}</span>
            {price !== undefined && price > 0 && <span className="tag">{price} µ per call</span>}
          </div>
        </div>
        <p>{entry.operation.summary}</p>
        <FieldsTable document={document} schema={entry.request} />
        <JsonEditor id="request-body" label="Request (JSON)" value={text} onChange={setText} rows={Math.min(16, Math.max(5, text.split('\n').length + 1))} />
        <div className="row">
          <button type="button" className="button-primary" onClick={execute} disabled={busy || Boolean(parsed.error)}>
            {busy ? (stream ? 'Streaming…' : 'Running…') : 'Run'}
          </button>
          {stream && run.streaming && (
            <button type="button" className="button-secondary" onClick={() => closeStream.current?.()}>
              Stop
            </button>
          )}
          <button type="button" className="button-ghost" onClick={() => setText(JSON.stringify(entry.example ?? {}, null, 2))}>
            Reset to example
          </button>
        </div>
      </section>
      <section className="card" aria-labelledby="response-title" aria-live="polite">
        <h2 id="response-title">Response</h2>
        {!run.result && !run.messages && !run.error && !busy && <p className="muted">Run the request to see the answer here.</p>}
        {busy && !stream && <Loading label="Waiting for the answer…" />}
        <ErrorNotice error={run.error} />
        {run.result && (
          <>
            <p className="response-meta">
              <span className={`status-code ${run.result.ok ? 'ok' : 'bad'}`} data-testid="response-status">
                {run.result.status}
              </span>
              <span className="muted" data-testid="response-time">
                {run.result.ms.toFixed(0)} ms
              </span>
            </p>
            <pre className="code-block" data-testid="response-body">
              {typeof run.result.body === 'string' ? run.result.body : JSON.stringify(run.result.body, null, 2)}
            </pre>
          </>
        )}
        {run.messages && (
          <>
            <p className="response-meta">
              <span className="muted">
                {run.messages.length} message{run.messages.length === 1 ? '' : 's'}
                {run.streaming ? ' so far…' : `, stream closed after ${elapsed.toFixed(0)} ms`}
              </span>
            </p>
            <pre className="code-block" data-testid="response-body">
              {run.messages.map((message) => JSON.stringify(message)).join('\n')}
            </pre>
          </>
        )}
      </section>
      <section className="card" aria-labelledby="snippet-title">
        <div className="section-head">
          <h2 id="snippet-title">The same call</h2>
          <div className="tabs" role="tablist" aria-label="Snippet language">
            {(['curl', 'sdk', 'cli'] as const).map((kind) => (
              <button key={kind} type="button" role="tab" aria-selected={snippet === kind} onClick={() => setSnippet(kind)}>
                {kind === 'curl' ? 'curl' : kind === 'sdk' ? 'SDK' : 'CLI'}
              </button>
            ))}
          </div>
        </div>
        <div className="snippet">
          <pre className="code-block" data-testid="snippet">
            {snippetText}
          </pre>
          <CopyButton text={snippetText} />
        </div>
      </section>
    </>
  );
}

function typeOf(schema: JsonSchema): string {
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(' | ');
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(' or ');
  if (schema.type === 'array') return `${schema.items ? typeOf(schema.items) : 'any'}[]`;
  if (Array.isArray(schema.type)) return schema.type.join(' | ');
  return schema.type ?? (schema.$ref ? schema.$ref.split('/').pop()! : 'any');
}

function FieldsTable({ document, schema }: { document: OpenApiDocument; schema: JsonSchema }) {
  const resolved = resolveSchema(document, schema);
  const fields = Object.entries(resolved.properties ?? {});
  if (fields.length === 0) return <p className="muted small">This endpoint takes no fields: send <code>{'{}'}</code>.</p>;
  return (
    <details className="fields">
      <summary>
        {fields.length} field{fields.length === 1 ? '' : 's'}
      </summary>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Type</th>
              <th scope="col">Description</th>
            </tr>
          </thead>
          <tbody>
            {fields.map(([name, field]) => (
              <tr key={name}>
                <th scope="row">
                  <code>{name}</code>
                  {resolved.required?.includes(name) && <span className="required"> required</span>}
                </th>
                <td>
                  <code>{typeOf(field)}</code>
                </td>
                <td>{field.description}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </details>
  );
}
