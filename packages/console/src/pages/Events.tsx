/**
 * Events: pick a topic (the API has no topic list, so the topics used from this browser are
 * remembered), publish a JSON message, read the kept events, and tail new ones live over the
 * event/Consume websocket.
 */
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { openStream, type ApiError } from '../api';
import { useAction, useLoad } from '../hooks';
import { useSession } from '../session';
import { Empty, ErrorNotice, formatDate, JsonEditor, Loading, PageHeader, parseJson } from '../ui';

const TOPICS_STORAGE = 'alto.topics';
const MAX_TAIL = 200;

interface EventMessage {
  id: string;
  topic?: string;
  message: Record<string, unknown>;
  timestamp: string;
}

function rememberedTopics(): string[] {
  try {
    const parsed = JSON.parse(localStorage.getItem(TOPICS_STORAGE) ?? '[]') as unknown;
    return Array.isArray(parsed) ? parsed.filter((topic): topic is string => typeof topic === 'string') : [];
  } catch {
    return [];
  }
}

export function EventsPage() {
  const [topics, setTopics] = useState<string[]>(rememberedTopics);
  const [topic, setTopic] = useState<string>(() => rememberedTopics()[0] ?? 'events');
  const [draft, setDraft] = useState(topic);
  const [published, setPublished] = useState(0);

  function choose(next: string) {
    const name = next.trim();
    if (!name) return;
    setTopic(name);
    setDraft(name);
    setTopics((current) => {
      const updated = [name, ...current.filter((entry) => entry !== name)].slice(0, 20);
      localStorage.setItem(TOPICS_STORAGE, JSON.stringify(updated));
      return updated;
    });
  }

  return (
    <>
      <PageHeader title="Events" description="Durable topics: publish JSON messages, read what is kept, and follow new events live." />
      <section className="card" aria-labelledby="topic-title">
        <h2 id="topic-title">Topic</h2>
        <form
          className="row"
          onSubmit={(event) => {
            event.preventDefault();
            choose(draft);
          }}
        >
          <label htmlFor="topic-name" className="visually-hidden">
            Topic name
          </label>
          <input id="topic-name" className="grow" value={draft} onChange={(event) => setDraft(event.target.value)} list="known-topics" placeholder="orders.created" />
          <datalist id="known-topics">
            {topics.map((name) => (
              <option key={name} value={name} />
            ))}
          </datalist>
          <button type="submit" className="button-secondary">
            Open topic
          </button>
        </form>
        {topics.length > 0 && (
          <ul className="chips" aria-label="Recent topics">
            {topics.map((name) => (
              <li key={name}>
                <button type="button" className={`chip${name === topic ? ' chip-selected' : ''}`} aria-pressed={name === topic} onClick={() => choose(name)}>
                  {name}
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      <div className="two-columns">
        <Publish
          topic={topic}
          onPublished={() => {
            choose(topic);
            setPublished((count) => count + 1);
          }}
        />
        <LiveTail key={topic} topic={topic} />
      </div>
      <KeptEvents topic={topic} published={published} />
    </>
  );
}

function Publish({ topic, onPublished }: { topic: string; onPublished: () => void }) {
  const session = useSession();
  const [text, setText] = useState('{\n  "hello": "world"\n}');
  const [sent, setSent] = useState<string>();
  const publish = useAction(async () => {
    const parsed = parseJson(text);
    if (parsed.error) throw new Error(`the message is not valid JSON: ${parsed.error}`);
    await session.call('event', 'Publish', { topic, message: parsed.value });
    return true;
  });
  async function submit(event: FormEvent) {
    event.preventDefault();
    if (await publish.run()) {
      setSent(new Date().toLocaleTimeString());
      onPublished();
    }
  }
  return (
    <section className="card" aria-labelledby="publish-title">
      <h2 id="publish-title">Publish to {topic}</h2>
      <form onSubmit={submit}>
        <JsonEditor id="event-message" label="Message (JSON object)" value={text} onChange={setText} rows={6} />
        <button type="submit" className="button-primary" disabled={publish.busy}>
          Publish
        </button>
        {sent && !publish.error && (
          <span className="muted small" role="status">
            {' '}
            Published at {sent}.
          </span>
        )}
      </form>
      <ErrorNotice error={publish.error} onDismiss={publish.clearError} />
    </section>
  );
}

function LiveTail({ topic }: { topic: string }) {
  const session = useSession();
  const [running, setRunning] = useState(false);
  const [connected, setConnected] = useState(false);
  const [events, setEvents] = useState<EventMessage[]>([]);
  const [error, setError] = useState<ApiError>();
  const close = useRef<() => void>(undefined);

  useEffect(() => {
    if (!running) return;
    setError(undefined);
    close.current = openStream(session.key, 'event', 'Consume', { topic }, {
      onOpen: () => setConnected(true),
      onMessage: (message) => setEvents((current) => [message as EventMessage, ...current].slice(0, MAX_TAIL)),
      onError: setError,
      onClose: () => {
        setConnected(false);
        setRunning(false);
      },
    });
    return () => close.current?.();
  }, [running, topic, session.key]);

  return (
    <section className="card" aria-labelledby="tail-title">
      <div className="section-head">
        <h2 id="tail-title">Live tail</h2>
        <div className="row">
          <span className="muted small" role="status">
            <span className={`dot ${connected ? 'dot-ok' : 'dot-off'}`} aria-hidden="true" /> {connected ? 'listening' : running ? 'connecting…' : 'stopped'}
          </span>
          <button type="button" className={running ? 'button-secondary' : 'button-primary'} onClick={() => setRunning((value) => !value)}>
            {running ? 'Stop' : 'Start tail'}
          </button>
        </div>
      </div>
      <ErrorNotice error={error} />
      {events.length === 0 ? (
        <Empty>{running ? `Waiting for new events on ${topic}…` : 'Start the tail to see new events as they are published.'}</Empty>
      ) : (
        <ol className="event-list" aria-live="polite" data-testid="tail">
          {events.map((event) => (
            <li key={event.id}>
              <span className="muted small">{formatDate(event.timestamp)}</span>
              <code>{JSON.stringify(event.message)}</code>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function KeptEvents({ topic, published }: { topic: string; published: number }) {
  const session = useSession();
  const kept = useLoad(() => session.call<{ events: EventMessage[] }>('event', 'Read', { topic, limit: 50 }), [topic, published, session.key]);
  return (
    <section className="card" aria-labelledby="kept-title">
      <div className="section-head">
        <h2 id="kept-title">Kept events (oldest first)</h2>
        <button type="button" className="button-ghost small" onClick={kept.reload}>
          Refresh
        </button>
      </div>
      <ErrorNotice error={kept.error} />
      {kept.loading && !kept.data ? (
        <Loading />
      ) : kept.data?.events.length ? (
        <ol className="event-list">
          {kept.data.events.map((event) => (
            <li key={event.id}>
              <span className="muted small">{formatDate(event.timestamp)}</span>
              <code>{JSON.stringify(event.message)}</code>
            </li>
          ))}
        </ol>
      ) : (
        <Empty>No events kept on {topic}.</Empty>
      )}
      <p className="hint">Retention is set per project with event/SetRetention (see the API explorer).</p>
    </section>
  );
}
