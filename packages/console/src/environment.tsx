/**
 * The environment the Apps, Functions and Logs pages act in. Apps and functions belong to an
 * environment of their project; the key acts in its own unless the page picks another (an owner
 * or admin key may: the calls then send X-Alto-Environment, streams `?environment=`). The
 * project's environments come from projects/Environments; the choice is in the page's URL
 * (`#/apps?env=staging`, so a link keeps it) and remembered per project for the next visit.
 */
import { createContext, useCallback, useContext, useMemo } from 'react';
import { call, openStream, type StreamHandlers } from './api';
import { useLoad, useRoute } from './hooks';
import { useSession } from './session';

const storageKey = (project: string) => `alto.environment.${project}`;

export interface EnvironmentChoice {
  /** The environment acted in. */
  environment: string;
  /** The project's environments (the key's own when it may not list them). */
  environments: string[];
  choose(environment: string): void;
  /** Calls an endpoint in the chosen environment. */
  call<T = any>(service: string, endpoint: string, body?: unknown): Promise<T>;
  /** Opens a stream in the chosen environment. */
  stream(service: string, endpoint: string, request: unknown, handlers: StreamHandlers): () => void;
}

export function useEnvironment(): EnvironmentChoice {
  const session = useSession();
  const { params } = useRoute();
  const project = session.status.key.project;
  const own = session.status.key.environment;
  const environment = params.get('env') || localStorage.getItem(storageKey(project)) || own;
  const listed = useLoad(
    () =>
      session.canManage
        ? session.call<{ environments: string[] }>('projects', 'Environments', { name: project }).then(
            (answer) => answer.environments,
            () => [own],
          )
        : Promise.resolve([own]),
    [session.key, project],
  );
  const environments = useMemo(() => [...new Set([...(listed.data ?? [own]), environment])].sort(), [listed.data, own, environment]);
  const choose = useCallback(
    (next: string) => {
      localStorage.setItem(storageKey(project), next);
      const [path, query = ''] = (location.hash.replace(/^#/, '') || '/').split('?');
      const search = new URLSearchParams(query);
      search.set('env', next);
      location.hash = `${path}?${search}`;
    },
    [project],
  );
  // The key's own environment needs no header.
  const other = environment === own ? undefined : environment;
  // Stable while the key and the environment are, so effects that depend on them do not run again.
  const callIn = useCallback(<T,>(service: string, endpoint: string, body: unknown = {}) => call<T>(session.key, service, endpoint, body, other), [session.key, other]);
  const stream = useCallback(
    (service: string, endpoint: string, request: unknown, handlers: StreamHandlers) => openStream(session.key, service, endpoint, request, handlers, other),
    [session.key, other],
  );
  return useMemo(() => ({ environment, environments, choose, call: callIn, stream }), [environment, environments, choose, callIn, stream]);
}

/** The environment picker: a select of the project's environments (only a label when there is one). */
export function EnvironmentPicker({ choice }: { choice: EnvironmentChoice }) {
  if (choice.environments.length < 2) {
    return (
      <p className="muted environment-picker">
        Environment <span className="tag">{choice.environment}</span>
      </p>
    );
  }
  return (
    <label className="environment-picker">
      Environment{' '}
      <select aria-label="Environment" value={choice.environment} onChange={(event) => choice.choose(event.target.value)}>
        {choice.environments.map((name) => (
          <option key={name} value={name}>
            {name}
          </option>
        ))}
      </select>
    </label>
  );
}

/** The page's choice, for its parts: a page that picks provides it, its forms and panels read it. */
export const EnvironmentContext = createContext<EnvironmentChoice | undefined>(undefined);

export function usePickedEnvironment(): EnvironmentChoice {
  const choice = useContext(EnvironmentContext);
  if (!choice) throw new Error('usePickedEnvironment outside EnvironmentContext');
  return choice;
}
