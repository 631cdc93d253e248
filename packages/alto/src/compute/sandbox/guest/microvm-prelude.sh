# shellcheck shell=sh
# Sourced by supervisor.sh in a microVM guest (as /.alto/prelude.sh) before the app starts:
# the app's output and the control channel go to their virtio-serial ports, the guest gets its
# hostname, /dev/shm, /dev/pts and /dev/fd, a reader of the signal port starts, and the volumes
# are mounted. Reads from settings.sh (supervisor.ts):
#   ALTO_HOSTNAME          the guest's hostname
#   ALTO_UID, ALTO_GID     the app's user, who owns the top of each volume
#   ALTO_VOLUMES           the volumes' paths, separated by spaces (letters, digits and ._-/ only),
#                          the i-th on the disk whose serial is alto-volume-<i>
#   ALTO_SECRET_FILES      not empty: a tmpfs is mounted at /run/secrets for supervisor.sh to
#                          write the secrets' files into
exec 3>/dev/alto.control 1>/dev/alto.stdout 2>/dev/alto.stderr </dev/null
$B hostname "$ALTO_HOSTNAME"
$B mkdir -p /dev/shm /dev/pts && $B mount -t tmpfs -o mode=1777 shm /dev/shm && $B mount -t devpts devpts /dev/pts
[ -e /dev/fd ] || $B ln -s /proc/self/fd /dev/fd
if [ -n "$ALTO_SECRET_FILES" ]; then
  $B mkdir -p /run/secrets && $B mount -t tmpfs -o mode=0755,size=4m,nosuid,nodev,noexec alto-secrets /run/secrets
fi
# The host writes `term` on the signal port to stop the app; PID 1 passes it on. After the grace
# period, `kill` ends every process but PID 1, which then syncs and powers off. A reseed gives a
# restored copy its own random state and clock. A backup freezes and thaws a volume's filesystem
# (`freeze`, `thaw`, at /.alto/volume.<i>). The guest agent (agent.s), where the host has
# one for this guest, reads them as records; without it, this shell reads them as lines
# (signalMessage in microvm.ts).
if [ -x /.alto/agent ]; then
  /.alto/agent </dev/alto.signal &
else
  # shellcheck disable=SC2086,SC2059  # the line is split into its words on purpose, and the seed is octal escapes for printf
  ( $B cat /dev/alto.signal | while read -r line; do [ "$line" = term ] && $B kill -TERM 1; [ "$line" = kill ] && $B kill -KILL -1; case "$line" in "reseed "*) set -- $line; printf "$3" >/dev/urandom; $B date -s "@$2" >/dev/null; echo alto:reseeded >&3;; "freeze "*) set -- $line; if $B fsfreeze --freeze "$2"; then echo "alto:frozen 0"; else echo "alto:frozen 2"; fi >&3;; "thaw "*) set -- $line; if $B fsfreeze --unfreeze "$2"; then echo "alto:thawed 0"; else echo "alto:thawed 2"; fi >&3;; esac; done ) &
fi
# Each volume's disk is found by its serial, whatever name the kernel gave it; a volume that
# cannot be mounted ends the instance before the app runs. A killed QEMU is a power cut for the
# guest: what the app wrote without fsync and the guest's kernel still held is lost. With a
# shared kernel (Docker, the process sandbox) a kill loses none of it, so the guest writes dirty
# pages back within about a second, not 30 s, and commits its journal every second (commit=1).
if [ -n "$ALTO_VOLUMES" ]; then
  echo 100 >/proc/sys/vm/dirty_expire_centisecs
  echo 100 >/proc/sys/vm/dirty_writeback_centisecs
fi
index=0
# shellcheck disable=SC2086  # split on spaces on purpose; the paths have none, nor wildcards
for path in $ALTO_VOLUMES; do
  dev=
  i=0
  while [ -z "$dev" ]; do
    for serial in /sys/block/vd*/serial; do
      [ "$($B cat "$serial" 2>/dev/null)" = "alto-volume-$index" ] && dev=/dev/$($B basename "${serial%/serial}")
    done
    i=$((i+1))
    [ -z "$dev" ] && [ $i -gt 1000 ] && break
    [ -z "$dev" ] && $B usleep 2000
  done
  if [ -z "$dev" ] || ! $B mkdir -p "$path" || ! $B mount -t ext4 -o noatime,nosuid,nodev,commit=1 "$dev" "$path"; then
    echo "alto: cannot mount the volume at $path" >&2
    echo "alto:exit 125" >&3
    $B sync
    $B reboot -f
  fi
  $B chown "$ALTO_UID:$ALTO_GID" "$path"
  # Where a backup names the volume to freeze (microvm-volume-backup.ts), whatever its path's length.
  $B ln -s "$path" "/.alto/volume.$index"
  index=$((index+1))
done
