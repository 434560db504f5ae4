#!/bin/sh
# /init of the rig's dom0 (busybox; tests/xen/rig.sh): brings up the Xen
# tools the way a Debian host's xencommons does, then runs the test
# (/etc/xenrig/dom0-test.sh) and powers off. The result is the line
# XENRIG-RESULT=PASS or XENRIG-RESULT=FAIL: reason on the console.
export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
# devtmpfs lacks the links udev makes; Xen's locking.sh stats /dev/stdin
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=755 tmpfs /run # tap-ctl: only root may write it
mount -t tmpfs tmpfs /tmp
mkdir -p /run/xen /run/xenstored /run/lock /run/tapdisk /var/log/xen/console
up() { cut -d' ' -f1 /proc/uptime; }
finish() {
	sleep 1
	grep -q xenrig.shell /proc/cmdline && exec setsid cttyhack /bin/sh
	poweroff -f
}
fail() {
	echo "XENRIG-RES""ULT=FAIL: $*"
	finish
}
echo "dom0: init, uptime $(up)"
# xen-blkback is not loaded: tapback serves the VBDs (docs/XEN.md)
while read -r m; do insmod "$m" || echo "dom0: insmod $m failed"; done </modules.list
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
xenstored --pid-file /run/xen/xenstored.pid || fail "xenstored"
i=0
until xenstore-read -s / >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -gt 150 ] && fail "xenstored does not answer"
	sleep 0.2
done
xenconsoled --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console ||
	fail "xenconsoled"
xen-init-dom0 || fail "xen-init-dom0"
echo "XENRIG-DOM0-UP uptime=$(up)"
. /etc/xenrig/dom0-test.sh
finish
