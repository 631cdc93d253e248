/**
 * @module compute/sandbox/supervisor
 * The supervisor: the shell script that is PID 1 inside every sandbox (the guest after
 * switch_root for microvm, the new PID namespace after pivot_root for process). It runs the
 * image's entrypoint + cmd as its child with exactly the image's env, workdir and user, reaps
 * every orphan that the kernel hands to PID 1 (ash's `wait` collects any child), passes SIGTERM
 * on to the app, and tells the host on the control channel (fd 3) `alto:started`, `alto:ready`
 * (something listens on the port) and `alto:exit <code>`.
 *
 * It runs on tools Alto brings along in /.alto/bin, never on the image's own: busybox-static
 * for the shell, and util-linux `setpriv` (with its libraries, started through the bundled
 * dynamic loader) to switch to the image's uid/gid, because busybox's setpriv cannot.
 */
import { shellQuote } from './common.js';

/** Where the tools are inside the sandbox's root. */
export const TOOLS_DIR = '/.alto/bin';
export const BUSYBOX = `${TOOLS_DIR}/busybox`;

export interface SupervisorOptions {
  argv: string[];
  env: Record<string, string>;
  workdir: string;
  uid: number;
  gid: number;
  /** 0: do not wait for a listener; `alto:ready` follows `alto:started` at once. */
  port: number;
  /** Commands run first (as root, before the app): mounts, the control channel. */
  prelude: string[];
  /** Commands run after `alto:exit` was written (the guest powers off; a process simply exits). */
  epilogue: string[];
}

/** `/proc/net/tcp*` spell the port in upper-case hex; state 0A is LISTEN. */
function listenPattern(port: number): string {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return `:${hex} [0-9A-F]+:0000 0A`;
}

export function buildSupervisorScript(options: SupervisorOptions): string {
  const env = Object.entries(options.env).map(([key, value]) => shellQuote(`${key}=${value}`));
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
  const readiness =
    options.port === 0
      ? 'echo alto:ready >&3'
      : `( while :; do if $B grep -qsE ${shellQuote(listenPattern(options.port))} /proc/net/tcp /proc/net/tcp6; then echo alto:ready >&3; exit 0; fi; $B sleep 0.01; done ) &
watcher=$!`;
  return `# Alto sandbox supervisor (generated). PID 1: runs the app, reaps orphans, forwards SIGTERM.
B=${BUSYBOX}
${options.prelude.join('\n')}
child=
watcher=
forward_term() { [ -n "$child" ] && $B kill -TERM "$child" 2>/dev/null; }
trap forward_term TERM INT
workdir=${shellQuote(options.workdir || '/')}
$B mkdir -p "$workdir" 2>/dev/null
cd "$workdir" || { echo "alto: cannot enter workdir $workdir" >&2; echo "alto:exit 126" >&3; exit 126; }
$B env -i ${env.join(' ')} ${launcher.join(' ')} ${options.argv.map(shellQuote).join(' ')} 3>&- &
child=$!
echo alto:started >&3
${readiness}
# A trapped SIGTERM interrupts \`wait\` (status 128+15) while the app still runs: wait again. When
# the app ended meanwhile, a second \`wait\` returns the status the shell collected for it (or 127
# when the first one already returned it).
code=
while [ -z "$code" ]; do
  wait "$child"
  status=$?
  $B kill -0 "$child" 2>/dev/null && continue
  wait "$child" 2>/dev/null
  again=$?
  [ "$again" -ne 127 ] && status=$again
  code=$status
done
[ -n "$watcher" ] && $B kill "$watcher" 2>/dev/null
echo "alto:exit $code" >&3
${options.epilogue.join('\n')}
exit "$code"
`;
}
