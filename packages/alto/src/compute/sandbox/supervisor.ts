/**
 * @module compute/sandbox/supervisor
 * The supervisor: the shell script guest/supervisor.sh, PID 1 inside every sandbox (the guest
 * after switch_root for microvm, the new PID namespace after pivot_root for process). It runs the
 * image's entrypoint + cmd as its child with exactly the image's env, workdir and user, reaps
 * every orphan that the kernel hands to PID 1, passes a stop (SIGTERM to it) on to the app as the
 * app's stop signal (the image's STOPSIGNAL, or the app's `stop_signal`: SIGTERM unless one
 * says otherwise, as Docker does), and tells the host
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
import type { HealthCheck, SecretFile } from './port.js';
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
  /** The signal the app gets when its instance is stopped (`stopSignalName`); default TERM. */
  stopSignal?: string;
  /**
   * Whether `${TOOLS_DIR}/alto-enter` is there to start the app with every signal at its default
   * (launcher/alto-enter.c `--default-signals`): the shell starts it as a background child, with
   * SIGINT and SIGQUIT ignored.
   */
  defaultSignals?: boolean;
  /** The app's health check: `alto:ready` waits for its first success (after the listener). */
  health?: HealthCheck;
  /** Lines `address name...` added to the sandbox's /etc/hosts before the app starts (links.ts' linkHostLines). */
  hosts?: string[];
  /** The sandbox's /etc/resolv.conf, written anew before the app starts (dns.ts' resolvConf); absent: the image's stays. */
  resolvConf?: string;
  /** Files the supervisor writes into /run/secrets (a tmpfs the driver mounted) before the app starts. */
  secretFiles?: SecretFile[];
}

/** Signals an app may ask to be stopped with, by the name busybox's `kill -NAME` takes. */
const STOP_SIGNALS = ['TERM', 'INT', 'QUIT', 'HUP', 'USR1', 'USR2', 'WINCH', 'PWR', 'KILL'] as const;
const SIGNAL_NUMBERS: Record<string, (typeof STOP_SIGNALS)[number]> = { '1': 'HUP', '2': 'INT', '3': 'QUIT', '9': 'KILL', '10': 'USR1', '12': 'USR2', '15': 'TERM', '28': 'WINCH', '30': 'PWR' };

/**
 * The name of a stop signal as images and users write it (`SIGINT`, `INT`, `sigquit`, `2`), or
 * undefined when it is none of those an app may be stopped with.
 */
export function stopSignalName(signal: string): string | undefined {
  const text = signal.trim().toUpperCase();
  if (/^\d{1,2}$/.test(text)) return SIGNAL_NUMBERS[String(Number(text))];
  const name = text.startsWith('SIG') ? text.slice(3) : text;
  return (STOP_SIGNALS as readonly string[]).includes(name) ? name : undefined;
}

/** The stop signals accepted, for error messages. */
export const STOP_SIGNAL_NAMES = STOP_SIGNALS.map((name) => `SIG${name}`).join(', ');

/** guest/supervisor.sh, the same for every instance. */
export function supervisorScript(): Buffer {
  return guestFile('supervisor.sh');
}

/** `/proc/net/tcp*` spell the port in upper-case hex; state 0A is LISTEN. */
function listenPattern(port: number): string {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return `:${hex} [0-9A-F]+:0000 0A`;
}

const SECRET_TARGET = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$/;

/**
 * ALTO_SECRET_FILES: one line `target mode uid:gid base64` per file (supervisor.sh). The value
 * is base64 so no byte of it is ever a word the shell splits or runs, and it reaches neither the
 * app's env nor an argv: the shell echoes it into busybox's base64 -d.
 */
function secretFileLines(files: SecretFile[], uid: number, gid: number): string {
  return files
    .map((file) => {
      if (!SECRET_TARGET.test(file.target)) throw new Error(`secret file name ${JSON.stringify(file.target)} is not letters, digits and ._-`);
      if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o777 || file.mode & 0o002) throw new Error(`secret file ${file.target}: mode ${file.mode} is not 0-0775 and not world-writable`);
      const owner = `${file.uid ?? uid}:${file.gid ?? gid}`;
      return `${file.target} ${file.mode.toString(8).padStart(4, '0')} ${owner} ${Buffer.from(file.value).toString('base64')}`;
    })
    .join('\n');
}

/**
 * The instance's settings.sh, which supervisor.sh sources (its header says what each means):
 * variable assignments and the positional parameters, every value shell-quoted.
 */
export function supervisorSettings(options: SupervisorOptions): string {
  const env = Object.entries(options.env).map(([key, value]) => `${key}=${value}`);
  const launcher = [
    ...(options.defaultSignals ? [`${TOOLS_DIR}/alto-enter`, '--default-signals', '--'] : []),
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
    ALTO_STOP_SIGNAL: stopSignalName(options.stopSignal ?? 'TERM') ?? 'TERM',
    ALTO_HEALTH_INTERVAL: options.health ? String(options.health.intervalSeconds) : '',
    ALTO_HEALTH_TIMEOUT: options.health ? String(options.health.timeoutSeconds) : '',
    ALTO_HEALTH_START: options.health ? String(options.health.startPeriodSeconds) : '',
    ALTO_HEALTH_RETRIES: options.health ? String(options.health.retries ?? 3) : '',
    ALTO_HOSTS: (options.hosts ?? []).join('\n'),
    ALTO_RESOLV_CONF: options.resolvConf ?? '',
    ALTO_SECRET_FILES: secretFileLines(options.secretFiles ?? [], options.uid, options.gid),
  };
  for (const [name, value] of Object.entries(options.hookSettings ?? {})) {
    if (!/^ALTO_[A-Z0-9_]+$/.test(name) || name in settings) throw new Error(`supervisor setting ${name} must be a name ALTO_... of its own`);
    settings[name] = value;
  }
  return [
    '# This instance\'s settings, sourced by supervisor.sh (written by supervisor.ts).',
    ...Object.entries(settings).map(([name, value]) => `${name}=${shellQuote(value)}`),
    `set -- ${[...env, ...launcher, ...options.argv].map(shellQuote).join(' ')}`,
    // The health check runs as the app does: its environment, its user, its signals.
    ...(options.health ? [`alto_health_check() { exec "$B" env -i ${[...env, ...launcher, ...options.health.test].map(shellQuote).join(' ')}; }`] : []),
    '',
  ].join('\n');
}
