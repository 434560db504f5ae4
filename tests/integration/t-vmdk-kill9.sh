#!/bin/bash
# kill -9 of a tapdisk serving a monolithicSparse VMDK in the middle of
# writes, alone and in a write storm (fio random allocating writes with flushes, plus a writer,
# qemu-io on one connection without flushes, that reports every write
# once it is acknowledged, each one allocating grains or writing into a
# grain the previous one allocated):
#  - the image opens in QEMU: qemu-img check finds no error;
#  - every acknowledged write reads back through QEMU (docs/FORMAT-vmdk.md:
#    a write that allocates a grain is acknowledged only once its grain
#    table entry, in both copies, is on disk);
#  - the killed image (with its sparse tail) opens again and grows, and
#    is clean after a normal stop; libvmdk's vmdkinfo accepts it.
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io fio

SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")

check_clean() {
	local out
	out=$(qemu-img check -f vmdk "$1" 2>&1) || fail "qemu-img check $1: $out"
	echo "$out" | grep -q "No errors were found" || fail "qemu-img check $1: $out"
}

# writer OUT: one qemu-io session (one NBD connection, writeback: no flush or FUA
# between writes) writes 68 KiB (across grain boundaries) with pattern i at
# 16 MiB + i * 68 KiB; it prints "wrote ... at offset X" for each write
# once it is acknowledged
N=20000
for i in $(seq 0 $((N - 1))); do
	echo "write -P $((i % 250 + 1)) $((16777216 + i * 69632)) 68k"
done >"$T/cmds"
writer() {
	qemu-io -t writeback -f raw "$URI" <"$T/cmds" >"$1" 2>&1
}

# first alone (no flush at all: only the write path makes the grain table
# entries durable), then with the fio storm
for run in "1 alone" "2 storm" "3 storm"; do
	set -- $run
	delay=$1 mode=$2
	img=$T/k.vmdk
	rm -f "$img" "$T/acked"
	qemu-img create -q -f vmdk "$img" 2G
	td_serve "vmdk:$img" "$SOCK"
	qemu-io -f raw -c "write -P 0x5a 0 8M" -c "write -P 0x5b 2040M 4k" -c flush "$URI" \
		>/dev/null || fail "pre-kill writes"
	fio_pid=
	if [ "$mode" = storm ]; then
		fio --name=storm --ioengine=nbd --uri="$URI" --rw=randwrite --bsrange=4k-64k \
			--iodepth=16 --offset=1500M --size=500M --fsync=64 --time_based \
			--runtime=30 --output="$T/storm.txt" >/dev/null 2>&1 &
		fio_pid=$!
	fi
	writer "$T/acked" &
	writer_pid=$!
	sleep "$delay"
	kill -9 "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	[ -n "$fio_pid" ] && wait "$fio_pid" 2>/dev/null
	wait "$writer_pid" 2>/dev/null
	rm -f "$SOCK"
	grep -o "wrote 69632/69632 bytes at offset [0-9]*" "$T/acked" | awk '{print $NF}' >"$T/offs"
	n=$(wc -l <"$T/offs")
	[ "$n" -ge 3 ] || fail "the writer got only $n writes acknowledged in ${delay}s"
	[ "$n" -lt "$N" ] || fail "all $N writes were acknowledged before the kill: kill sooner"
	check_clean "$img"
	cmds=(-c "read -P 0x5a 0 8M" -c "read -P 0x5b 2040M 4k")
	while read -r off; do
		i=$(((off - 16777216) / 69632))
		cmds+=(-c "read -P $((i % 250 + 1)) $off 68k")
	done <"$T/offs"
	out=$(qemu-io -r -f vmdk "${cmds[@]}" "$img" 2>&1)
	echo "$out" | grep -qi "verification failed\|error" &&
		fail "an acknowledged write is lost after kill -9: $(echo "$out" | grep -i -m3 'failed\|error')"
	# the killed image opens, grows, stops cleanly
	td_serve "vmdk:$img" "$SOCK"
	qemu-io -f raw -c "write -P 0x5d 1000M 1M" -c "read -P $((0 % 250 + 1)) 16777216 68k" \
		-c flush "$URI" >/dev/null || fail "write after kill -9"
	td_stop "$TD_PID" || fail "exit status after reopen"
	check_clean "$img"
	qemu-io -r -f vmdk -c "read -P 0x5d 1000M 1M" "$img" | grep -qi "verification failed" &&
		fail "the write after the reopen is lost"
	vmdkinfo "$img" >/dev/null 2>&1 || fail "vmdkinfo refuses the image after kill -9"
	echo "   kill after ${delay}s ($mode): $n acknowledged writes all read back, qemu-img check clean"
done
info "ok"
