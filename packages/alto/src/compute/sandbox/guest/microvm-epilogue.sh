# shellcheck shell=sh
# Sourced by supervisor.sh in a microVM guest (as /.alto/epilogue.sh) after the app ended and
# `alto:exit` was written: each volume is unmounted (remounted read-only if something still holds
# it) so it is clean, the disks are synced, and the guest powers off (QEMU then exits).
# shellcheck disable=SC2086  # ALTO_VOLUMES is split on spaces on purpose (microvm-prelude.sh)
for path in $ALTO_VOLUMES; do
  $B umount "$path" 2>/dev/null || $B mount -o remount,ro "$path"
done
$B sync
$B reboot -f
