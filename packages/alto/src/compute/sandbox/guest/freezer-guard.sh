# shellcheck shell=sh
# The process driver's freezer guard, on hosts with cgroup v1 (process.ts): a suspended sandbox is
# frozen by the v1 freezer, and a frozen process does not act on a SIGKILL until it is thawed, so
# the parent-death SIGKILL a sandbox gets when its Alto is killed would wait forever. One guard
# per driver, started by Alto with its standard input a pipe from Alto and kept out of every
# sandbox's groups: when that pipe closes (Alto ended, however it ended) it thaws the freezer
# groups that Alto's instance records (reap.ts) name, and the sandboxes end as their signals
# arrive. The groups of other Altos' instances, recorded with another owner, are left frozen.
#
# Run as `busybox sh freezer-guard.sh <busybox> <Alto's pid> <the driver's state folder>`.
set -u
B=$1
alto_pid=$2
state_dir=$3
# Blocks, reading nothing, until Alto's end of the pipe closes.
$B cat >/dev/null
for record in "$state_dir"/*.instance.json; do
  [ -f "$record" ] || continue
  $B grep -q "\"owner\":{\"pid\":$alto_pid," "$record" || continue
  for dir in $($B grep -o '"/sys/fs/cgroup/freezer/[^"]*"' "$record" | $B tr -d '"'); do
    [ -f "$dir/freezer.state" ] && echo THAWED >"$dir/freezer.state"
  done
done
exit 0
