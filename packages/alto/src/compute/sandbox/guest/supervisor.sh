# Alto's sandbox supervisor (supervisor.ts): PID 1 of every sandbox, the guest after switch_root
# for microvm, the new PID namespace after pivot_root for process. It runs the app as its child
# with exactly the image's env, workdir and user, reaps every orphan that the kernel hands to
# PID 1 (ash's `wait` collects any child), passes a stop (SIGTERM or SIGINT to it) on to the app
# as the app's stop signal, and tells the host on
# the control channel (fd 3) `alto:started`, `alto:ready` (something listens on the port, and
# the app's health check passed once when it has one) and `alto:exit <code>`. It runs on the tools in /.alto/bin, never on the image's own.
#
# Run as `/.alto/bin/busybox sh <dir>/supervisor.sh`, with <dir>/settings.sh (written per
# instance by supervisor.ts) beside it, which sets:
#   ALTO_WORKDIR         the folder the app starts in
#   ALTO_LISTEN_PATTERN  an extended regular expression for /proc/net/tcp* matching the app's
#                        port in state LISTEN (empty: do not wait for a listener)
#   ALTO_UID, ALTO_GID   the app's user (for the prelude: the launcher below has it already)
#   ALTO_PRELUDE         a file to source before the app starts, as root (empty: none)
#   ALTO_EPILOGUE        a file to source after `alto:exit` was written (empty: none)
#   ALTO_STOP_SIGNAL     the signal the app is stopped with, as `kill -NAME` takes it (TERM, INT...)
#   ALTO_HOSTS           lines `address name...` for /etc/hosts (the links' names; empty: none)
#   ALTO_RESOLV_CONF     the content of /etc/resolv.conf (Alto's resolver; empty: the image's stays)
#   ALTO_SECRET_FILES    lines `name mode uid:gid base64` of the files to write into /run/secrets,
#                        a tmpfs the driver mounted for them (empty: none)
#   ALTO_HEALTH_INTERVAL seconds between runs of alto_health_check until it first passes (empty:
#                        no health check), ALTO_HEALTH_TIMEOUT the seconds one run may take,
#                        ALTO_HEALTH_START the first seconds whose failures are not logged;
#                        once ready it goes on every interval, and ALTO_HEALTH_RETRIES
#                        failures in a row make the instance unhealthy
#   "$@"                 what `env -i` runs: the app's environment (NAME=value...), the launcher
#                        that switches to the app's user, then the app's argv
# and what else the prelude and epilogue read (see microvm-prelude.sh).
B=/.alto/bin/busybox
# shellcheck source=/dev/null  # written per instance
. "${0%/*}/settings.sh"
exec </dev/null
# shellcheck source=/dev/null  # the driver's, named by settings.sh
[ -z "$ALTO_PRELUDE" ] || . "$ALTO_PRELUDE"
# The links' names, in /etc/hosts (written anew, whatever a symlink there pointed at, inside the sandbox).
if [ -n "$ALTO_HOSTS" ]; then
  $B mkdir -p /etc
  {
    if [ -f /etc/hosts ]; then $B grep -v ' # alto link$' /etc/hosts; else echo '127.0.0.1 localhost'; fi
    echo "$ALTO_HOSTS" | $B sed 's/$/ # alto link/'
  } >/etc/.alto-hosts && $B chmod 644 /etc/.alto-hosts && $B mv -f /etc/.alto-hosts /etc/hosts
fi
# Alto's resolver for this instance, in /etc/resolv.conf (written anew, like /etc/hosts).
if [ -n "$ALTO_RESOLV_CONF" ]; then
  $B mkdir -p /etc
  printf '%s\n' "$ALTO_RESOLV_CONF" >/etc/.alto-resolv.conf && $B chmod 644 /etc/.alto-resolv.conf && $B mv -f /etc/.alto-resolv.conf /etc/resolv.conf
fi
# The secrets' files, into the tmpfs the driver mounted at /run/secrets (never onto a disk): the
# value goes from the shell's memory to base64 -d's stdin, in no env and no argv. Without that
# tmpfs the app does not start.
if [ -n "$ALTO_SECRET_FILES" ]; then
  if ! $B grep -q "^[^ ]* /run/secrets tmpfs " /proc/mounts || ! echo "$ALTO_SECRET_FILES" | while read -r name mode owner value; do
    (umask 077 && echo "$value" | $B base64 -d >"/run/secrets/$name") && $B chown "$owner" "/run/secrets/$name" && $B chmod "$mode" "/run/secrets/$name" || exit 1
  done; then
    echo "alto: cannot write the secrets' files into /run/secrets" >&2
    echo "alto:exit 125" >&3
    # shellcheck source=/dev/null  # the driver's, named by settings.sh
    [ -z "$ALTO_EPILOGUE" ] || . "$ALTO_EPILOGUE"
    exit 125
  fi
  unset ALTO_SECRET_FILES
fi
child=
watcher=
# shellcheck disable=SC2317  # reached through the trap below
forward_term() { [ -n "$child" ] && $B kill -"${ALTO_STOP_SIGNAL:-TERM}" "$child" 2>/dev/null; }
trap forward_term TERM INT
workdir=$ALTO_WORKDIR
$B mkdir -p "$workdir" 2>/dev/null
cd "$workdir" || { echo "alto: cannot enter workdir $workdir" >&2; echo "alto:exit 126" >&3; exit 126; }
$B env -i "$@" 3>&- &
child=$!
echo alto:started >&3
# One run of the health check (settings.sh's alto_health_check), killed after ALTO_HEALTH_TIMEOUT.
health_passes() {
  ( alto_health_check ) >/dev/null 2>&1 3>&- &
  check=$!
  ( $B sleep "$ALTO_HEALTH_TIMEOUT"; $B kill -9 "$check" 2>/dev/null ) 3>&- &
  killer=$!
  wait "$check"
  result=$?
  $B kill "$killer" 2>/dev/null
  return "$result"
}
if [ -z "$ALTO_LISTEN_PATTERN" ] && [ -z "$ALTO_HEALTH_INTERVAL" ]; then
  echo alto:ready >&3
else
  # Ready once something listens on the port and, with a health check, once it first passes.
  (
    if [ -n "$ALTO_LISTEN_PATTERN" ]; then
      until $B grep -qsE "$ALTO_LISTEN_PATTERN" /proc/net/tcp /proc/net/tcp6; do $B sleep 0.01; done
    fi
    if [ -n "$ALTO_HEALTH_INTERVAL" ]; then
      began=$($B date +%s)
      until health_passes; do
        [ $(($($B date +%s) - began)) -ge "${ALTO_HEALTH_START:-0}" ] && echo "alto: the health check failed (exit $result); the instance is not ready yet" >&2
        $B sleep "$ALTO_HEALTH_INTERVAL"
      done
    fi
    echo alto:ready >&3
    # Then checked on every interval: unhealthy after ALTO_HEALTH_RETRIES failures in a row,
    # healthy again at the next pass (said on the control channel when it changes).
    if [ -n "$ALTO_HEALTH_INTERVAL" ]; then
      echo alto:health healthy >&3
      healthy=1
      failures=0
      while :; do
        $B sleep "$ALTO_HEALTH_INTERVAL"
        if health_passes; then
          failures=0
          [ "$healthy" = 1 ] || { healthy=1; echo alto:health healthy >&3; }
        else
          failures=$((failures + 1))
          if [ "$healthy" = 1 ] && [ "$failures" -ge "${ALTO_HEALTH_RETRIES:-3}" ]; then
            healthy=0
            echo "alto: the health check failed $failures times in a row (exit $result): the instance is unhealthy" >&2
            echo alto:health unhealthy >&3
          fi
        fi
      done
    fi
  ) &
  watcher=$!
fi
# A trapped SIGTERM interrupts `wait` (status 128+15) while the app still runs: wait again. When
# the app ended meanwhile, a second `wait` returns the status the shell collected for it (or 127
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
# shellcheck source=/dev/null  # the driver's, named by settings.sh
[ -z "$ALTO_EPILOGUE" ] || . "$ALTO_EPILOGUE"
exit "$code"
