/**
 * The console's shell: sign-in until a key is known, then the navigation (a sidebar, folded
 * behind a Menu button on a phone), the theme toggle, who you are, and the page the hash
 * route names.
 */
import { useEffect, useRef, useState, type ReactNode } from 'react';
import { useRoute, useTheme } from './hooks';
import { AppsPage } from './pages/Apps';
import { CronPage } from './pages/Cron';
import { DbPage } from './pages/Db';
import { EventsPage } from './pages/Events';
import { ExplorerPage } from './pages/Explorer';
import { FunctionsPage } from './pages/Functions';
import { KeysPage } from './pages/Keys';
import { LogsPage } from './pages/Logs';
import { OverviewPage } from './pages/Overview';
import { ProjectsPage } from './pages/Projects';
import { RequestsPage } from './pages/Requests';
import { SignInPage } from './pages/SignIn';
import { SpacePage } from './pages/Space';
import { StacksPage } from './pages/Stacks';
import { UsagePage } from './pages/Usage';
import { SessionProvider, useSessionState, type Session } from './session';
import { Loading } from './ui';

interface NavItem {
  path: string;
  label: string;
  icon: string;
  page: () => ReactNode;
  /** Shown only when this holds for the session. */
  when?: (session: Session) => boolean;
}

const NAV: NavItem[] = [
  { path: '/', label: 'Overview', icon: '◎', page: () => <OverviewPage /> },
  { path: '/projects', label: 'Projects', icon: '▦', page: () => <ProjectsPage />, when: (s) => s.canManage },
  { path: '/keys', label: 'API keys', icon: '◇', page: () => <KeysPage />, when: (s) => s.canManage },
  { path: '/explorer', label: 'API explorer', icon: '⌘', page: () => <ExplorerPage /> },
  { path: '/db', label: 'Database', icon: '☰', page: () => <DbPage />, when: (s) => s.hasService('db') },
  { path: '/space', label: 'Space', icon: '◫', page: () => <SpacePage />, when: (s) => s.hasService('space') },
  { path: '/events', label: 'Events', icon: '⇶', page: () => <EventsPage />, when: (s) => s.hasService('event') },
  { path: '/cron', label: 'Cron', icon: '◷', page: () => <CronPage />, when: (s) => s.hasService('cron') },
  { path: '/apps', label: 'Apps', icon: '▶', page: () => <AppsPage />, when: (s) => s.hasService('app') },
  { path: '/stacks', label: 'Stacks', icon: '▤', page: () => <StacksPage />, when: (s) => s.hasService('template') },
  { path: '/functions', label: 'Functions', icon: 'ƒ', page: () => <FunctionsPage />, when: (s) => s.hasService('function') },
  { path: '/logs', label: 'Logs', icon: '≡', page: () => <LogsPage />, when: (s) => s.hasService('app') },
  { path: '/requests', label: 'Requests', icon: '⇄', page: () => <RequestsPage />, when: (s) => s.hasService('logs') },
  { path: '/usage', label: 'Usage', icon: '▥', page: () => <UsagePage />, when: (s) => s.hasService('usage') },
];

export function App() {
  return (
    <SessionProvider>
      <Shell />
    </SessionProvider>
  );
}

/** Moves focus to the main content; the hash stays the route's (it is the router's). */
function SkipLink() {
  return (
    <a
      className="skip-link"
      href="#main"
      onClick={(event) => {
        event.preventDefault();
        document.getElementById('main')?.focus();
      }}
    >
      Skip to content
    </a>
  );
}

function ThemeToggle({ theme, toggle }: { theme: string; toggle: () => void }) {
  const next = theme === 'dark' ? 'light' : 'dark';
  return (
    <button type="button" className="button-ghost theme-toggle" onClick={toggle} aria-label={`Switch to ${next} theme`} title={`Switch to ${next} theme`}>
      <span aria-hidden="true">{theme === 'dark' ? '☀' : '☾'}</span>
    </button>
  );
}

function Shell() {
  const { session, restoring } = useSessionState();
  const [theme, toggleTheme] = useTheme();
  if (restoring) {
    return (
      <main className="centered">
        <Loading label="Checking your key…" />
      </main>
    );
  }
  if (!session) {
    return (
      <>
        <SkipLink />
        <div className="signin-theme">
          <ThemeToggle theme={theme} toggle={toggleTheme} />
        </div>
        <SignInPage />
      </>
    );
  }
  return <SignedIn session={session} theme={theme} toggleTheme={toggleTheme} />;
}

function SignedIn({ session, theme, toggleTheme }: { session: Session; theme: string; toggleTheme: () => void }) {
  const { path } = useRoute();
  const [menuOpen, setMenuOpen] = useState(false);
  const items = NAV.filter((item) => !item.when || item.when(session));
  const current = items.find((item) => item.path === path);
  const firstRender = useRef(true);

  useEffect(() => {
    setMenuOpen(false);
    document.title = `${current?.label ?? 'Not found'} · Alto console`;
    // Move focus to the new page's heading so keyboard and screen reader users start there.
    if (firstRender.current) firstRender.current = false;
    else requestAnimationFrame(() => document.getElementById('page-title')?.focus());
  }, [path, current?.label]);

  const { key } = session.status;
  return (
    <div className="layout">
      <SkipLink />
      <header className="topbar">
        <a className="brand" href="#/">
          <img src="/favicon.svg" alt="" width={24} height={24} />
          <span>Alto</span>
        </a>
        <div className="topbar-end">
          <span className="whoami" title={`role ${key.role}, scopes ${key.scopes.join(', ')}`}>
            <span className={`badge badge-${key.role}`}>{key.role}</span>
            <span className="whoami-project">
              {key.project}
              <span className="muted"> / {key.environment}</span>
            </span>
          </span>
          <ThemeToggle theme={theme} toggle={toggleTheme} />
          <button type="button" className="button-ghost" onClick={session.signOut}>
            Sign out
          </button>
          <button
            type="button"
            className="button-secondary menu-button"
            aria-expanded={menuOpen}
            aria-controls="nav"
            onClick={() => setMenuOpen((open) => !open)}
          >
            {menuOpen ? 'Close' : 'Menu'}
          </button>
        </div>
      </header>
      <nav id="nav" className={`sidebar${menuOpen ? ' open' : ''}`} aria-label="Console">
        <ul>
          {items.map((item) => (
            <li key={item.path}>
              <a href={`#${item.path}`} aria-current={item.path === path ? 'page' : undefined} onClick={() => setMenuOpen(false)}>
                <span className="nav-icon" aria-hidden="true">
                  {item.icon}
                </span>
                {item.label}
              </a>
            </li>
          ))}
        </ul>
        <p className="sidebar-foot muted small">
          Alto {session.status.version} · <a href="/v1/openapi.json">OpenAPI</a>
        </p>
      </nav>
      <main id="main" tabIndex={-1} className="content">
        {current ? (
          current.page()
        ) : (
          <div>
            <h1 id="page-title" tabIndex={-1}>
              Nothing here
            </h1>
            <p>
              There is no page at <code>{path}</code>. <a href="#/">Go to the overview</a>.
            </p>
          </div>
        )}
      </main>
    </div>
  );
}
