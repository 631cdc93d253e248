/**
 * The signed-in session: the key (kept in localStorage), who it is (`/v1/status`), and a
 * `call` bound to it. Pages read it with {@link useSession}.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { ApiError, call, readStatus, type Status } from './api';

const KEY_STORAGE = 'alto.key';

export interface Session {
  key: string;
  status: Status;
  /** Calls an endpoint with the session's key. */
  call<T = any>(service: string, endpoint: string, body?: unknown): Promise<T>;
  /** True when the key may manage projects and keys (admin or account owner). */
  canManage: boolean;
  hasService(name: string): boolean;
  signOut(): void;
  refreshStatus(): Promise<void>;
}

interface SessionState {
  session: Session | undefined;
  /** Set while a stored key is checked on load. */
  restoring: boolean;
  signIn(key: string): Promise<void>;
}

const SessionContext = createContext<SessionState | undefined>(undefined);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [key, setKey] = useState<string | undefined>(() => localStorage.getItem(KEY_STORAGE) ?? undefined);
  const [status, setStatus] = useState<Status | undefined>();
  const [restoring, setRestoring] = useState<boolean>(() => Boolean(localStorage.getItem(KEY_STORAGE)));

  const signOut = useCallback(() => {
    localStorage.removeItem(KEY_STORAGE);
    setKey(undefined);
    setStatus(undefined);
  }, []);

  useEffect(() => {
    const stored = localStorage.getItem(KEY_STORAGE);
    if (!stored) return;
    readStatus(stored)
      .then(setStatus)
      .catch((error: unknown) => {
        // A revoked or wrong key signs out; a network failure keeps the key for the next load.
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) signOut();
      })
      .finally(() => setRestoring(false));
  }, [signOut]);

  const signIn = useCallback(async (candidate: string) => {
    const trimmed = candidate.trim();
    if (!trimmed) throw new ApiError(400, 'bad_request', 'enter an API key');
    const checked = await readStatus(trimmed);
    localStorage.setItem(KEY_STORAGE, trimmed);
    setKey(trimmed);
    setStatus(checked);
  }, []);

  const session = useMemo<Session | undefined>(() => {
    if (!key || !status) return undefined;
    return {
      key,
      status,
      call: (service, endpoint, body = {}) => call(key, service, endpoint, body),
      canManage: status.key.role === 'admin' || status.key.role === 'owner',
      hasService: (name) => status.services.includes(name),
      signOut,
      refreshStatus: async () => setStatus(await readStatus(key)),
    };
  }, [key, status, signOut]);

  const value = useMemo(() => ({ session, restoring, signIn }), [session, restoring, signIn]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSessionState(): SessionState {
  const state = useContext(SessionContext);
  if (!state) throw new Error('useSessionState outside SessionProvider');
  return state;
}

/** The signed-in session; only pages shown after sign-in use it. */
export function useSession(): Session {
  const { session } = useSessionState();
  if (!session) throw new Error('useSession before sign-in');
  return session;
}
