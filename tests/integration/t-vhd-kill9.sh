#!/bin/bash
# kill -9 during an allocating write storm on a dynamic VHD (three runs,
# killed at different points): afterwards
#  - QEMU (qemu-img convert -f vpc) and libvhdi (vhdimount) open the image
#    and read the same disk, and a fresh process of ours exports that disk
#    too: the BAT never points at a block that is not there, and no two
#    entries share one (docs/FORMAT-vhd.md, "How the vhd driver orders
#    metadata");
#  - data written and flushed before the kill (fio with crc32c verify
#    headers, a qemu-io pattern written and flushed in the middle of the
#    storm) reads back: fio --verify_only passes;
#  - the image opens and grows again, and a clean stop leaves it readable;
#  - the same on a differencing child (partial sector bitmaps written in
#    rounds): the flushed data verifies, the parent never changes.
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io nbdcopy fio vhdimount cmp sha256sum

SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")
MNT=$T/mnt
mkdir -p "$MNT"
td_on_exit "umount '$MNT' 2>/dev/null"

readers_agree() {
	local img=$1 what=$2
	qemu-img convert -f vpc -O raw "$img" "$T/qemu.raw" || fail "$what: qemu-img convert"
	vhdimount "$img" "$MNT" >/dev/null || fail "$what: vhdimount"
	cmp "$MNT/vhdi1" "$T/qemu.raw" || { umount "$MNT"; fail "$what: libvhdi and QEMU disagree"; }
	umount "$MNT"
	td_serve "vhd:$img" "$SOCK" --readonly
	nbdcopy "$URI" "$T/ours.raw" || fail "$what: nbdcopy"
	td_stop "$TD_PID" || fail "$what: exit status (read-only)"
	cmp "$T/ours.raw" "$T/qemu.raw" || fail "$what: our reading differs from QEMU's"
	rm -f "$T/qemu.raw" "$T/ours.raw"
}

fio_base=(--name=base --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16
	--offset=0 --size=48M --verify=crc32c --verify_fatal=1 --randrepeat=1)

for delay in 1 2 3; do
	info "run: kill -9 after ${delay}s of storm"
	img=$T/k.vhd
	rm -f "$img"
	qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$img" 512M
	td_serve "vhd:$img" "$SOCK"
	fio "${fio_base[@]}" --do_verify=1 --end_fsync=1 --output="$T/base.txt" ||
		{ cat "$T/base.txt"; fail "base fio"; }
	# allocating random writes all over the rest, with flushes among them
	fio --name=storm --ioengine=nbd --uri="$URI" --rw=randwrite --bsrange=4k-256k \
		--iodepth=32 --offset=128M --size=380M --fsync=64 --time_based --runtime=30 \
		--output="$T/storm.txt" >/dev/null 2>&1 &
	fio_pid=$!
	sleep "$delay"
	qemu-io -f raw -c "write -P 0x5c 100M 1M" -c flush "$URI" >/dev/null || fail "mid-storm flush"
	sleep 0.3
	kill -9 "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	wait "$fio_pid" 2>/dev/null
	rm -f "$SOCK"
	readers_agree "$img" "after kill -9 ($delay s)"
	td_serve "vhd:$img" "$SOCK"
	fio "${fio_base[@]}" --verify_only --output="$T/verify.txt" ||
		{ cat "$T/verify.txt"; fail "data flushed before the kill does not verify"; }
	qemu-io -f raw -c "read -P 0x5c 100M 1M" "$URI" 2>&1 | grep -qi "verification failed" &&
		fail "the mid-storm flushed write was lost"
	# the killed image grows again and stops cleanly
	qemu-io -f raw -c "write -P 0x5d 500M 1M" -c "write -P 0x5e 60M 64k" -c flush "$URI" \
		>/dev/null || fail "write after kill -9"
	td_stop "$TD_PID" || fail "exit status after reopen"
	readers_agree "$img" "after reopen ($delay s)"
	qemu-io -f vpc -c "read -P 0x5d 500M 1M" -c "read -P 0x5e 60M 64k" "$img" 2>&1 |
		grep -qi "verification failed" && fail "writes after the reopen are not in the image"
done
info "run: kill -9 during a storm on a differencing child (partial bitmaps)"
D=$T/diff
mkdir -p "$D"
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$D/base.vhd" 512M
qemu-io -f vpc -c "write -P 0x3a 0 64M" "$D/base.vhd" >/dev/null || fail "base fill"
URI=$(tap-ctl create -a "vhd:$D/base.vhd") || fail "tap-ctl create"
tap-ctl snapshot -s "${URI#nbd+unix:///?socket=}" "$D/child.vhd" || fail "snapshot"
tap-ctl destroy -s "${URI#nbd+unix:///?socket=}" || fail "destroy"
URI=$(uri_of "$SOCK")
sum=$(sha256sum <"$D/base.vhd")
td_serve "vhd:$D/child.vhd" "$SOCK"
# 4 KiB writes over the parent's data: each sets a few bits of a bitmap
fio "${fio_base[@]}" --do_verify=1 --end_fsync=1 --output="$T/base.txt" ||
	{ cat "$T/base.txt"; fail "base fio (child)"; }
fio --name=storm --ioengine=nbd --uri="$URI" --rw=randwrite --bsrange=4k-64k \
	--iodepth=32 --offset=128M --size=380M --fsync=64 --time_based --runtime=30 \
	--output="$T/storm.txt" >/dev/null 2>&1 &
fio_pid=$!
sleep 2
qemu-io -f raw -c "write -P 0x5c 100M 1M" -c flush "$URI" >/dev/null || fail "mid-storm flush (child)"
sleep 0.3
kill -9 "$TD_PID"
wait "$TD_PID" 2>/dev/null
wait "$fio_pid" 2>/dev/null
rm -f "$SOCK"
[ "$(sha256sum <"$D/base.vhd")" = "$sum" ] || fail "the parent changed"
td_serve "vhd:$D/child.vhd" "$SOCK"
fio "${fio_base[@]}" --verify_only --output="$T/verify.txt" ||
	{ cat "$T/verify.txt"; fail "flushed data in the child does not verify after kill -9"; }
# sectors no write touched still read the parent's data
qemu-io -f raw -c "read -P 0x5c 100M 1M" -c "read -P 0x3a 50M 4k" "$URI" 2>&1 |
	grep -qi "verification failed" && fail "child after kill -9: flushed write or parent data lost"
td_stop "$TD_PID" || fail "exit status (child)"
echo ok
