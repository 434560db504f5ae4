#!/bin/sh
# /init of the systemd VM's initramfs (tests/systemd/vm.sh): loads the
# virtio and ext4 modules, mounts the root disk /dev/vda read-write and
# hands over to systemd. Busybox only.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
	echo "SYSTEMDVM-RESULT=FAIL: initramfs: $*"
	sleep 1
	poweroff -f
}
while read -r m; do
	insmod "$m" || fail "insmod $m"
done </modules.list
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && fail "no /dev/vda"
	sleep 0.1
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
if grep -q sdvm.shell /proc/cmdline; then
	echo "SYSTEMDVM: sdvm.shell: the test unit is masked; log in as root (no password)"
	ln -sf /dev/null /newroot/etc/systemd/system/sdvm-test.service
	rm -f /newroot/etc/systemd/system/serial-getty@ttyS0.service
	sed -i 's/^root:[^:]*:/root::/' /newroot/etc/shadow
fi
umount /proc /sys /dev
exec switch_root /newroot /sbin/init
