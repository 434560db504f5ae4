#!/bin/sh
# /init of the rig's PV guest (busybox; tests/xen/rig.sh). The phase comes
# from the kernel command line (xenrig.phase=...); every result is a line
# on the console, which xenconsoled logs for dom0 (tests/xen/dom0-test.sh).
#   fs1    mkfs.ext4 on xvdb (crypt:qcow2), files + checksums; xvdc is
#          access=ro: writes must fail, reads must see dom0's pattern
#   fs2    (second boot) every checksum verified; then, under a file load
#          on xvdb, a disk attached as xvdd is written and read, then
#          detached
#   wlog   sequence-numbered O_DIRECT writes on xvdb until dom0 attaches
#          xvdz (after xl save + xl restore), then the check (wlog.c)
#   bench  iobench on xvdb (and xvdc when present)
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "domU: $*"; }
bye() {
	sync
	say "done, uptime $(up)"
	poweroff -f
}
phase=$(sed -n 's/.*xenrig\.phase=\([a-z0-9]*\).*/\1/p' /proc/cmdline)
say "init, phase $phase, uptime $(up)"
# xenrig.nopersistent: blkfront without persistent grants (the bench's
# grant-copy variant of our disk)
bfargs=""
grep -q "xenrig\.nopersistent" /proc/cmdline && bfargs="feature_persistent=0"
while read -r m; do
	case "$m" in
	*xen-blkfront.ko*) insmod "$m" $bfargs || say "insmod $m failed" ;;
	*) insmod "$m" || say "insmod $m failed" ;;
	esac
done </modules.list
waitdev() { # NAME [tenths]
	i=0
	while [ ! -b "/dev/$1" ] && [ $i -lt "${2:-300}" ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -b "/dev/$1" ]
}
waitgone() { # NAME [tenths]
	i=0
	while [ -e "/sys/block/$1" ] && [ $i -lt "${2:-600}" ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ ! -e "/sys/block/$1" ]
}
waitdev xvdb || {
	say "NO /dev/xvdb"
	ls /sys/block
	bye
}
say "xvdb: $(cat /sys/block/xvdb/size) sectors, ro=$(cat /sys/block/xvdb/ro)," \
	"logical $(cat /sys/block/xvdb/queue/logical_block_size)," \
	"physical $(cat /sys/block/xvdb/queue/physical_block_size)," \
	"discard granularity $(cat /sys/block/xvdb/queue/discard_granularity)," \
	"max $(cat /sys/block/xvdb/queue/max_hw_sectors_kb) KiB/request"
mkdir -p /mnt

case "$phase" in
fs1)
	# mke2fs discards the whole disk first: DISCARD requests on the ring
	# by its path: busybox prefers its own (ext2-only) applet of that name
	if /sbin/mke2fs -q -t ext4 -F /dev/xvdb && mount -t ext4 /dev/xvdb /mnt; then
		say "FS-MKFS-OK"
	else
		say "FS-MKFS-FAIL"
		bye
	fi
	i=0
	for kb in 4 60 512 1024 3000 4096; do
		i=$((i + 1))
		dd if=/dev/urandom of="/mnt/f$i" bs=1k count=$kb 2>/dev/null
	done
	# the plaintext dom0 looks for in the image (it must not find it)
	yes "TDCRYPT-PLAINTEXT-MARKER-0123456789" | head -c 1048576 >/mnt/marker
	(cd /mnt && md5sum f* marker >/mnt/SUMS)
	sync
	sed 's/^/domU: sum /' /mnt/SUMS
	n=$(wc -l </mnt/SUMS)
	umount /mnt && say "FS-WRITE-OK files=$n"
	# xvdc: access=ro
	if waitdev xvdc 100; then
		ro=$(cat /sys/block/xvdc/ro)
		if dd if=/dev/zero of=/dev/xvdc bs=4096 count=1 oflag=direct 2>/dev/null; then
			say "RO-FAIL a write to the read-only disk succeeded"
		else
			say "RO-WRITE-REFUSED ro=$ro"
		fi
		say "RO-READ md5=$(dd if=/dev/xvdc bs=1M count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
	else
		say "RO-FAIL no xvdc"
	fi
	bye
	;;
fs2)
	mount -t ext4 /dev/xvdb /mnt || {
		say "FS-VERIFY-FAIL mount"
		bye
	}
	if (cd /mnt && md5sum -c SUMS >/tmp/check 2>&1); then
		say "FS-VERIFY-OK $(wc -l </mnt/SUMS) files"
	else
		sed 's/^/domU: /' /tmp/check
		say "FS-VERIFY-FAIL"
	fi
	# a file load on xvdb while xvdd comes and goes
	(
		n=0
		while [ ! -e /tmp/stop ]; do
			dd if=/dev/urandom of=/tmp/load bs=64k count=16 2>/dev/null
			cp /tmp/load /mnt/load && sync &&
				echo 3 >/proc/sys/vm/drop_caches &&
				cmp -s /tmp/load /mnt/load || {
				echo "domU: LOAD-FAIL after $n rounds"
				exit 1
			}
			n=$((n + 1))
			echo $n >/tmp/load.n
		done
		echo "domU: LOAD-OK rounds=$n"
	) &
	load=$!
	say "HOTPLUG-WAITING"
	if waitdev xvdd 1200; then
		dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
		w=$(md5sum </tmp/pat | cut -d' ' -f1)
		dd if=/tmp/pat of=/dev/xvdd bs=1M oflag=direct conv=fsync 2>/dev/null
		r=$(dd if=/dev/xvdd bs=1M count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
		if [ "$w" = "$r" ]; then say "HOTPLUG-ATTACH-OK md5=$w"; else say "HOTPLUG-ATTACH-FAIL $w $r"; fi
	else
		say "HOTPLUG-ATTACH-FAIL no xvdd"
	fi
	if waitgone xvdd 1200; then say "HOTPLUG-DETACH-OK"; else say "HOTPLUG-DETACH-FAIL"; fi
	touch /tmp/stop
	wait $load
	say "load rounds $(cat /tmp/load.n 2>/dev/null)"
	umount /mnt
	bye
	;;
wlog)
	/bin/wlog /dev/xvdb xvdz 8 64 900
	bye
	;;
bench)
	secs=$(sed -n 's/.*xenrig\.secs=\([0-9]*\).*/\1/p' /proc/cmdline)
	label=$(sed -n 's/.*xenrig\.label=\([a-z0-9_-]*\).*/\1/p' /proc/cmdline)
	# labels: NAME-rROUND -> NAME-rROUND (qd 1), NAME-qd4-rROUND (qd 4)
	/bin/iobench /dev/xvdb "$label" "${secs:-5}" 1
	/bin/iobench /dev/xvdb "${label%-r*}-qd4-r${label##*-r}" "${secs:-5}" 4
	if waitdev xvdc 20; then
		/bin/iobench /dev/xvdc "$label-xvdc" "${secs:-5}" 1
	fi
	bye
	;;
*)
	say "unknown phase '$phase'"
	bye
	;;
esac
