/**
 * @module compute/sandbox/supervisor
 * The supervisor: the shell script guest/supervisor.sh, PID 1 inside every sandbox (the guest
 * after switch_root for microvm, the new PID namespace after pivot_root for process). It runs the
 * image's entrypoint + cmd as its child with exactly the image's env, workdir and user, reaps
 * every orphan that the kernel hands to PID 1, passes SIGTERM on to the app, and tells the host
 * on the control channel (fd 3) `alto:started`, `alto:ready` (something listens on the port) and
 * `alto:exit <code>`. The script is the same for every instance; what differs is in the
 * settings.sh written beside it (`supervisorSettings`), which it sources: shell-quoted values
 * only, no code.
 *
 * It runs on tools Alto brings along in /.alto/bin, never on the image's own: busybox-static
 * for the shell, and util-linux `setpriv` (with its libraries, started through the bundled
 * dynamic loader) to switch to the image's uid/gid, because busybox's setpriv cannot.
 */
import { shellQuote } from './common.js';
import { guestFile } from './guest-files.js';

/** Where the tools are inside the sandbox's root. */
export const TOOLS_DIR = '/.alto/bin';

export interface SupervisorOptions {
  argv: string[];
  env: Record<string, string>;
  workdir: string;
  uid: number;
  gid: number;
  /** 0: do not wait for a listener; `alto:ready` follows `alto:started` at once. */
  port: number;
  /** A file (a path inside the sandbox) the supervisor sources first, as root, before the app. */
  prelude?: string;
  /** A file the supervisor sources after `alto:exit` was written (the guest powers off there). */
  epilogue?: string;
  /** Settings the prelude and epilogue read: names ALTO_..., values of any bytes but NUL. */
  hookSettings?: Record<string, string>;
}

/** guest/supervisor.sh, the same for every instance. */
export function supervisorScript(): Buffer {
  return guestFile('supervisor.sh');
}

/** `/proc/net/tcp*` spell the port in upper-case hex; state 0A is LISTEN. */
function listenPattern(port: number): string {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return `:${hex} [0-9A-F]+:0000 0A`;
}

/**
 * The instance's settings.sh, which supervisor.sh sources (its header says what each means):
 * variable assignments and the positional parameters, every value shell-quoted.
 */
export function supervisorSettings(options: SupervisorOptions): string {
  const env = Object.entries(options.env).map(([key, value]) => `${key}=${value}`);
  const launcher = [
    `${TOOLS_DIR}/ld.so`,
    '--library-path',
    `${TOOLS_DIR}/lib`,
    `${TOOLS_DIR}/setpriv`,
    `--reuid=${options.uid}`,
    `--regid=${options.gid}`,
    '--clear-groups',
    '--',
  ];
  const settings: Record<string, string> = {
    ALTO_WORKDIR: options.workdir || '/',
    ALTO_LISTEN_PATTERN: options.port === 0 ? '' : listenPattern(options.port),
    ALTO_UID: String(options.uid),
    ALTO_GID: String(options.gid),
    ALTO_PRELUDE: options.prelude ?? '',
    ALTO_EPILOGUE: options.epilogue ?? '',
  };
  for (const [name, value] of Object.entries(options.hookSettings ?? {})) {
    if (!/^ALTO_[A-Z0-9_]+$/.test(name) || name in settings) throw new Error(`supervisor setting ${name} must be a name ALTO_... of its own`);
    settings[name] = value;
  }
  return [
    '# This instance\'s settings, sourced by supervisor.sh (written by supervisor.ts).',
    ...Object.entries(settings).map(([name, value]) => `${name}=${shellQuote(value)}`),
    `set -- ${[...env, ...launcher, ...options.argv].map(shellQuote).join(' ')}`,
    '',
  ].join('\n');
}
