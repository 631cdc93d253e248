#!/tools/busybox sh
# Alto's microVM guest init, /init of the initramfs (guest-initramfs.ts): loads the virtio
# modules, mounts the image's root filesystem from the first virtio disk, unpacks the instance's
# supervisor from the second (a tar), links /dev/<name> to each virtio-serial port the host named,
# brings up the network, then switch_roots into the image with the supervisor as PID 1.
# The modules are loaded in the order /modules/order lists them (dependencies first).
B=/tools/busybox
fail() { echo "alto-init: $*" > /dev/ttyS0; $B sync; $B reboot -f; }
$B mount -t devtmpfs devtmpfs /dev
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
while read -r module; do
  $B insmod "/modules/$module" || fail "cannot load $module"
done < /modules/order
# Devices appear as the drivers probe them; wait for the ones the boot needs.
wait_for() { i=0; while [ ! -e "$1" ]; do i=$((i+1)); [ $i -gt 1000 ] && fail "no $1"; $B usleep 2000; done; }
wait_for /dev/vda
wait_for /dev/vdb
# A port's name arrives from the host a moment after the port itself.
i=0
while [ ! -e /dev/alto.control ] || [ ! -e /dev/alto.stdout ] || [ ! -e /dev/alto.stderr ] || [ ! -e /dev/alto.signal ]; do
  for port in /sys/class/virtio-ports/*; do
    name=$($B cat "$port/name" 2>/dev/null)
    [ -n "$name" ] && $B ln -sf "/dev/${port##*/}" "/dev/$name"
  done
  i=$((i+1)); [ $i -gt 1000 ] && fail "virtio-serial ports missing"; $B usleep 2000
done
$B mount -t ext4 -o noatime /dev/vda /newroot || fail "cannot mount the root disk"
for dir in .alto dev proc sys tmp; do [ -d /newroot/$dir ] || $B mkdir -p /newroot/$dir; done
$B mount -t tmpfs -o mode=0755,size=32m alto /newroot/.alto
$B cp -a /tools /newroot/.alto/bin
$B tar -xf /dev/vdb -C /newroot/.alto || fail "cannot read the supervisor disk"
# QEMU's user-mode network: the guest is 10.0.2.15 (the first address of its DHCP range), the
# gateway 10.0.2.2.
$B ip link set lo up
$B ip link set eth0 up
$B ip addr add 10.0.2.15/24 dev eth0
$B ip route add default via 10.0.2.2
$B mount --move /dev /newroot/dev
$B mount --move /proc /newroot/proc
$B mount --move /sys /newroot/sys
exec $B switch_root /newroot /.alto/bin/busybox sh /.alto/supervisor.sh
