# shellcheck shell=sh
# The process sandbox's stage 1 (process.ts): PID 1 of the sandbox's new PID namespace, still host
# root. It loop-mounts the writable layer and the volumes, mounts the overlay root (the image and
# the tools layer with /.alto), /dev and /proc, copies the supervisor in, pivot_roots into the
# root and detaches the host's tree, then drops to the sandbox's id range and enters a new user
# namespace, whose id maps the host writes while the last stage waits on stdin (`alto:userns`,
# then `go`), and execs the supervisor through alto-enter. The parent-death signal unshare
# --kill-child gave this PID 1 is cleared by the changes of credentials on the way (setpriv, the
# new user namespace), so alto-enter sets it again last: when unshare ends (it ends with Alto),
# the supervisor gets SIGKILL and the PID namespace ends with it.
#
# Run as `busybox sh process-stage1.sh [<volume image> <volume path>]...` with in its
# environment (removed from it before the sandbox's first exec):
#   ALTO_BUSYBOX         the host's static busybox
#   ALTO_RUN_DIR         the instance's folder, holding the names the overlay is mounted by
#                        (t: the tools layer, l: the image)
#   ALTO_ROOT            where the sandbox's root is mounted
#   ALTO_ROOT_DISK       the ext4 image of the writable layer
#   ALTO_ID_BASE         the first host uid and gid of the tenant's range (root in the sandbox)
#   ALTO_VOLUME_OWNER    uid:gid on the host of the app's user, who owns the top of each volume
#   ALTO_SUPERVISOR_DIR  the folder holding supervisor.sh and settings.sh
#   ALTO_HOSTNAME        the sandbox's hostname
#   ALTO_SECRETS_TMPFS   1: mount a tmpfs at /run/secrets for the supervisor to write the
#                        secrets' files into (empty: none)
set -e
B=${ALTO_BUSYBOX:?}
R=${ALTO_ROOT:?}
run_dir=${ALTO_RUN_DIR:?}
root_disk=${ALTO_ROOT_DISK:?}
id_base=${ALTO_ID_BASE:?}
volume_owner=${ALTO_VOLUME_OWNER:?}
supervisor_dir=${ALTO_SUPERVISOR_DIR:?}
hostname=${ALTO_HOSTNAME:?}
secrets_tmpfs=${ALTO_SECRETS_TMPFS:-}
unset ALTO_BUSYBOX ALTO_RUN_DIR ALTO_ROOT ALTO_ROOT_DISK ALTO_ID_BASE ALTO_VOLUME_OWNER ALTO_SUPERVISOR_DIR ALTO_HOSTNAME ALTO_SECRETS_TMPFS
cd "$run_dir"
# Attaching a loop device can fail for a moment when other sandboxes attach or release theirs at
# the same time (two mounts offered the same free device, one still being cleared): try again.
loop_mount() {
  tries=0
  until err=$($B mount -t ext4 -o loop,nosuid,nodev "$1" "$2" 2>&1); do
    tries=$((tries + 1))
    if [ "$tries" -ge 20 ]; then echo "$err (after $tries tries)" >&2; exit 1; fi
    $B usleep $((tries * 25000))
  done
}
$B mkdir u
loop_mount "$root_disk" u
$B mkdir -p u/upper u/work
$B chown "$id_base:$id_base" u/upper
$B mount -t overlay overlay -o lowerdir=t:l,upperdir=u/upper,workdir=u/work "$R"
# Volumes are loop-mounted in the sandbox's own mount namespace by neutral names (v0, v1...),
# then bound onto the overlay root before pivot_root: the app never sees a host path.
index=0
while [ $# -gt 0 ]; do
  $B mkdir "v$index"
  loop_mount "$1" "v$index"
  $B chown "$volume_owner" "v$index"
  $B mkdir -p "$R$2"
  $B mount --bind "v$index" "$R$2"
  index=$((index + 1))
  shift 2
done
for dir in dev proc; do [ -d "$R/$dir" ] || $B mkdir -p "$R/$dir"; done
[ -d "$R/tmp" ] || { $B mkdir -p "$R/tmp"; $B chmod 1777 "$R/tmp"; }
$B mount -t tmpfs -o "mode=0755,size=1m,nosuid,uid=$id_base,gid=$id_base" alto-dev "$R/dev"
for node in null zero full random urandom; do $B touch "$R/dev/$node"; $B mount --bind "/dev/$node" "$R/dev/$node"; done
$B mkdir -p "$R/dev/shm"
$B mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
$B ln -s /proc/self/fd "$R/dev/fd"; $B ln -s /proc/self/fd/0 "$R/dev/stdin"; $B ln -s /proc/self/fd/1 "$R/dev/stdout"; $B ln -s /proc/self/fd/2 "$R/dev/stderr"
$B mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for entry in sys sysrq-trigger; do [ -e "$R/proc/$entry" ] || continue; $B mount --bind "$R/proc/$entry" "$R/proc/$entry"; $B mount -o remount,bind,ro,nosuid,nodev,noexec "$R/proc/$entry"; done
$B cp "$supervisor_dir/supervisor.sh" "$supervisor_dir/settings.sh" "$R/.alto/run/"
# settings.sh holds the hidden env and the secrets' files: the sandbox's root (the supervisor) reads it, not the app's user.
$B chown "$id_base:$id_base" "$R/.alto/run/settings.sh"
$B chmod 600 "$R/.alto/run/settings.sh"
$B mount --bind "$R/.alto" "$R/.alto"
$B mount -o remount,bind,ro,nosuid,nodev "$R/.alto"
$B hostname "$hostname"
cd "$R"
$B pivot_root . .alto/old
B=/.alto/bin/busybox
cd /
$B umount -l /.alto/old
# Made after pivot_root, so a symlink of the image's resolves inside the sandbox's root.
if [ -n "$secrets_tmpfs" ]; then
  $B mkdir -p /run/secrets
  $B mount -t tmpfs -o "mode=0755,size=4m,nosuid,nodev,noexec,uid=$id_base,gid=$id_base" alto-secrets /run/secrets
fi
exec /.alto/bin/ld.so --library-path /.alto/bin/lib /.alto/bin/setpriv --reuid="$id_base" --regid="$id_base" --clear-groups -- /.alto/bin/busybox unshare --user -- /.alto/bin/busybox sh -c 'echo alto:userns >&3; read -r go; exec /.alto/bin/alto-enter --fds 4 --sandbox --parent-death-fd 3 -- /.alto/bin/busybox sh /.alto/run/supervisor.sh'
