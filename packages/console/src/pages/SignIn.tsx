/**
 * Sign in with an API key (admin, account owner or project key) or with an account's email
 * and password (accounts/Login, which returns an owner key); sign up when the instance is open.
 */
import { useState, type FormEvent } from 'react';
import { call } from '../api';
import { useSessionState } from '../session';
import { ErrorNotice, Field } from '../ui';

export function SignInPage() {
  const { signIn } = useSessionState();
  const [mode, setMode] = useState<'key' | 'account'>('key');
  const [key, setKey] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  function submitKey(event: FormEvent) {
    event.preventDefault();
    void run(() => signIn(key));
  }

  function submitAccount(event: FormEvent, endpoint: 'Login' | 'Signup') {
    event.preventDefault();
    void run(async () => {
      const answer = await call<{ key: string }>(undefined, 'accounts', endpoint, { email, password });
      await signIn(answer.key);
    });
  }

  return (
    <main id="main" tabIndex={-1} className="signin">
      <div className="signin-card card">
        <div className="signin-brand">
          <img src="/favicon.svg" alt="" width={40} height={40} />
          <div>
            <h1 id="page-title" tabIndex={-1}>
              Alto console
            </h1>
            <p className="muted">Your building blocks, behind one key.</p>
          </div>
        </div>
        <div className="tabs" role="tablist" aria-label="How to sign in">
          <button type="button" role="tab" aria-selected={mode === 'key'} onClick={() => setMode('key')}>
            API key
          </button>
          <button type="button" role="tab" aria-selected={mode === 'account'} onClick={() => setMode('account')}>
            Account
          </button>
        </div>
        {mode === 'key' ? (
          <form onSubmit={submitKey} aria-label="Sign in with an API key">
            <Field id="signin-key" label="API key" hint={<>The admin key <code>alto up</code> printed (also in <code>.alto/admin-key</code>), an owner key, or a project key.</>}>
              <input
                id="signin-key"
                type="password"
                autoComplete="current-password"
                value={key}
                onChange={(event) => setKey(event.target.value)}
                placeholder="alto_…"
                aria-describedby="signin-key-hint"
                autoFocus
                required
              />
            </Field>
            <button type="submit" className="button-primary wide" disabled={busy}>
              {busy ? 'Checking…' : 'Sign in'}
            </button>
          </form>
        ) : (
          <form onSubmit={(event) => submitAccount(event, 'Login')} aria-label="Sign in with an account">
            <Field id="signin-email" label="Email">
              <input id="signin-email" type="email" autoComplete="username" value={email} onChange={(event) => setEmail(event.target.value)} required />
            </Field>
            <Field id="signin-password" label="Password" hint="Signing in creates a new owner key for your account, kept in this browser.">
              <input
                id="signin-password"
                type="password"
                autoComplete="current-password"
                value={password}
                onChange={(event) => setPassword(event.target.value)}
                aria-describedby="signin-password-hint"
                required
              />
            </Field>
            <div className="row">
              <button type="submit" className="button-primary" disabled={busy}>
                {busy ? 'Signing in…' : 'Sign in'}
              </button>
              <button type="button" className="button-secondary" disabled={busy || !email || !password} onClick={(event) => submitAccount(event, 'Signup')}>
                Create account
              </button>
            </div>
          </form>
        )}
        <ErrorNotice error={error} />
        <p className="muted small">The key stays in this browser's local storage until you sign out.</p>
      </div>
    </main>
  );
}
