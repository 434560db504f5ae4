#!/bin/bash
# test: long — started first, so the parallel run does not end waiting for it
# qcow2 interoperability with QEMU, both directions:
#  1. QEMU writes (qemu-img/qemu-io, 4K/64K/2M clusters, zero clusters,
#     with and without a backing file), we read it back over NBD.
#  2. We write (fio random writes with crc32c verify, qemu-io patterns,
#     write-zeroes, trim), QEMU reads: qemu-img check is clean and
#     qemu-img convert of our image equals what our server exported.
#  3. Backing chains three deep (raw base, qcow2 mid, qcow2 top): reads
#     fall through, writes go only to the top, the backing files' sha256
#     never changes; a raw base shorter than the top reads as zeros past
#     its end.
#  4. kill -9 during a write storm: qemu-img check finds no corruption
#     (leaks allowed; -r leaks repairs them) and data flushed before the
#     kill reads back.
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io nbdcopy fio sha256sum

SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")

# pattern checks over NBD: "OFFSET LEN BYTE" ...
nbd_expect() {
	local spec out
	for spec in "$@"; do
		set -- $spec
		out=$(qemu-io -f raw -c "read -P $3 $1 $2" "$URI" 2>&1)
		echo "$out" | grep -q "^read " && ! echo "$out" | grep -qi "verification failed" ||
			fail "read -P $3 $1 $2 over NBD: $out"
	done
}

# our export (grabbed while serving) == QEMU's own reading of the image
# (after stopping: our lock keeps QEMU out, even with -U, while we serve)
grab_export() {
	nbdcopy "$URI" "$T/export.raw" || fail "nbdcopy from our server"
}
export_matches() {
	local img=$1 what=$2
	qemu-img convert -f qcow2 -O raw "$img" "$T/qemu.raw" || fail "$what: qemu-img convert"
	cmp "$T/export.raw" "$T/qemu.raw" || fail "$what: our export differs from qemu-img convert"
	rm -f "$T/export.raw" "$T/qemu.raw"
}

check_clean() {
	local out
	out=$(qemu-img check "$1" 2>&1) || fail "qemu-img check $1: $out"
	echo "$out" | grep -q "No errors were found" || fail "qemu-img check $1: $out"
}

info "1. QEMU writes, we read (4K, 64K and 2M clusters)"
for cs in 4k 64k 2M; do
	img=$T/q-$cs.qcow2
	qemu-img create -q -f qcow2 -o cluster_size=$cs "$img" 96M
	qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c "write -P 0x22 1M 4k" \
		-c "write -P 0x33 3149824 12k" -c "write -P 0x44 10M 3M" \
		-c "write -P 0x55 20M 1M" -c "write -z 20M 512k" \
		-c "write -P 0x66 95M 1M" "$img" >/dev/null || fail "qemu-io fill ($cs)"
	td_serve "qcow2:$img" "$SOCK"
	nbd_expect "0 64k 0x11" "1M 4k 0x22" "3149824 12k 0x33" "10M 3M 0x44" \
		"20M 512k 0" "21495808 512k 0x55" "95M 1M 0x66" "30M 1M 0" "65536 4k 0"
	grab_export
	td_stop "$TD_PID" || fail "exit status ($cs)"
	export_matches "$img" "qemu-written $cs"
	check_clean "$img"
done

info "1b. QEMU writes over a backing file (partial clusters: QEMU's copy-on-write)"
qemu-img create -q -f qcow2 "$T/b-base.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0xa1 0 8M" "$T/b-base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b b-base.qcow2 -F qcow2 "$T/b-top.qcow2"
qemu-io -f qcow2 -c "write -P 0xb2 4k 4k" -c "write -P 0xb3 1M 1M" -c "write -z 2M 64k" \
	"$T/b-top.qcow2" >/dev/null || fail "qemu-io top"
td_serve "qcow2:$T/b-top.qcow2" "$SOCK"
nbd_expect "0 4k 0xa1" "4k 4k 0xb2" "8k 56k 0xa1" "1M 1M 0xb3" "2M 64k 0" "2162688 1M 0xa1" \
	"8M 1M 0"
grab_export
td_stop "$TD_PID" || fail "exit status"
export_matches "$T/b-top.qcow2" "qemu-written over backing"

info "2. We write, QEMU reads: fio random writes with crc32c verify"
for cs in 64k 4k; do
	img=$T/w-$cs.qcow2
	qemu-img create -q -f qcow2 -o cluster_size=$cs "$img" 256M
	td_serve "qcow2:$img" "$SOCK"
	fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bsrange=4k-64k --iodepth=16 \
		--size=128M --offset=64M --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--randrepeat=1 --output="$T/fio.txt" || { cat "$T/fio.txt"; fail "fio verify ($cs)"; }
	grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio reported errors"; }
	qemu-io -f raw -c "write -P 0x71 0 1M" -c "write -P 0x72 1052672 8k" \
		-c "write -P 0x73 5M 4k" -c "write -z 5M 4k" -c "write -P 0x74 6M 256k" \
		-c "discard 6M 128k" -c "write -P 0x75 255M 1M" -c flush "$URI" >/dev/null ||
		fail "qemu-io writes over NBD ($cs)"
	nbd_expect "0 1M 0x71" "1052672 8k 0x72" "5M 4k 0" "255M 1M 0x75"
	nbdcopy "$URI" "$T/export.raw" || fail "nbdcopy"
	td_stop "$TD_PID" || fail "exit status ($cs)"
	check_clean "$img"
	qemu-img convert -f qcow2 -O raw "$img" "$T/qemu.raw" || fail "convert"
	cmp "$T/export.raw" "$T/qemu.raw" || fail "qemu-img convert of our image differs from our export ($cs)"
	qemu-io -f qcow2 -c "read -P 0x71 0 1M" -c "read -P 0x75 255M 1M" "$img" 2>&1 |
		grep -qi "verification failed" && fail "qemu-io pattern read of our image ($cs)"
	rm -f "$T/export.raw" "$T/qemu.raw"
done

info "2b. A 2M-cluster image, sequential and unaligned writes, write-zeroes across clusters"
img=$T/w-2M.qcow2
qemu-img create -q -f qcow2 -o cluster_size=2M "$img" 64M
td_serve "qcow2:$img" "$SOCK"
qemu-io -f raw -c "write -P 0x81 1M 3M" -c "write -P 0x82 10M 4k" -c "write -P 0x83 20M 8M" \
	-c "write -z 21M 5M" -c "write -P 0x84 63M 1M" "$URI" >/dev/null || fail "writes (2M)"
nbd_expect "1M 3M 0x81" "10M 4k 0x82" "20M 1M 0x83" "21M 5M 0" "26M 2M 0x83" "63M 1M 0x84"
nbdcopy "$URI" "$T/export.raw"
td_stop "$TD_PID" || fail "exit status (2M)"
check_clean "$img"
qemu-img convert -f qcow2 -O raw "$img" "$T/qemu.raw"
cmp "$T/export.raw" "$T/qemu.raw" || fail "2M-cluster image differs"
rm -f "$T/export.raw" "$T/qemu.raw"

info "2e. Fresh clusters land inside the file (sparse tail kept ahead), trimmed at a clean stop"
img=$T/w-tail.qcow2
qemu-img create -q -f qcow2 "$img" 256M
td_serve "qcow2:$img" "$SOCK"
qemu-io -f raw -c "write -P 0x85 0 64k" -c flush "$URI" >/dev/null || fail "writes (tail)"
serving=$(stat -c %s "$img")
# one fresh cluster: the file is extended at least 8 MiB ahead of it
[ "$serving" -ge $((8 << 20)) ] || fail "file is $serving bytes after one 64K cluster: not kept ahead"
qemu-io -f raw -c "write -P 0x85 64k 40M" -c flush "$URI" >/dev/null || fail "writes (tail)"
nbd_expect "0 40M 0x85"
td_stop "$TD_PID" || fail "exit status (tail)"
check_clean "$img"
end=$(qemu-img check --output=json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["image-end-offset"])')
[ "$(stat -c %s "$img")" = "$end" ] || fail "file $(stat -c %s "$img") bytes, image ends at $end: tail not trimmed"
echo "   while serving: $serving bytes; after stop: $end bytes (the image end)"

info "2c. A 64K L2 cache (eviction, writeback under cache pressure), 4K clusters"
img=$T/w-small-cache.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k "$img" 1G
td_serve "qcow2,cache=64K:$img" "$SOCK"
fio --name=p --ioengine=nbd --uri="$URI" --rw=randwrite --bsrange=4k-32k --iodepth=32 \
	--size=1G --io_size=48M --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--output="$T/fio.txt" || { cat "$T/fio.txt"; fail "fio verify (small cache)"; }
grab_export
td_stop "$TD_PID" || fail "exit status (small cache)"
check_clean "$img"
export_matches "$img" "small cache"

info "2d. A refcount table too small for the disk (QEMU's one cluster at 4K clusters) grows at open"
img=$T/w-grow.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k "$img" 8G
qemu-io -f qcow2 -c "write -P 0x91 0 4M" "$img" >/dev/null
rt_clusters() { python3 -c 'import struct,sys; print(struct.unpack(">I", open(sys.argv[1],"rb").read(60)[56:60])[0])' "$1"; }
[ "$(rt_clusters "$img")" = 1 ] || fail "qemu-img made a larger table than expected"
td_serve "qcow2:$img" "$SOCK"
qemu-io -f raw -c "write -P 0x92 8187M 4M" -c "write -P 0x93 4G 1M" "$URI" >/dev/null
nbd_expect "0 4M 0x91" "8187M 4M 0x92" "4G 1M 0x93"
td_stop "$TD_PID" || fail "exit status (grow)"
[ "$(rt_clusters "$img")" -gt 1 ] || fail "the refcount table did not grow"
check_clean "$img"
qemu-io -f qcow2 -c "read -P 0x91 0 4M" -c "read -P 0x92 8187M 4M" "$img" 2>&1 |
	grep -qi "verification failed" && fail "data after growth"

info "3. Backing chain three deep: raw base (shorter, odd size), qcow2 mid, qcow2 top"
mkdir -p "$T/chain"
head -c $((10 * 1048576 + 1000)) /dev/urandom >"$T/chain/base.raw"
qemu-img create -q -f qcow2 -b base.raw -F raw "$T/chain/mid.qcow2" 48M
qemu-io -f qcow2 -c "write -P 0xc1 2M 1M" -c "write -P 0xc2 12M 1M" -c "write -z 4M 64k" \
	"$T/chain/mid.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 "$T/chain/top.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0xd1 2560k 64k" "$T/chain/top.qcow2" >/dev/null
sum_before=$(sha256sum "$T/chain/base.raw" "$T/chain/mid.qcow2")
td_serve "qcow2:$T/chain/top.qcow2" "$SOCK"
nbd_expect "2M 512k 0xc1" "2560k 64k 0xd1" "2624k 448k 0xc1" "12M 1M 0xc2" "4M 64k 0" \
	"48M 16M 0" "11M 1M 0"
# bytes of the raw base come through, the tail past its odd end reads as zeros
nbdcopy "$URI" "$T/export.raw"
cmp -n $((2 * 1048576)) "$T/chain/base.raw" "$T/export.raw" || fail "base bytes differ"
cmp -i 0:$((10 * 1048576 + 1000)) -n $((1048576 - 1000)) /dev/zero "$T/export.raw" ||
	fail "past the end of the raw base is not zero"
rm -f "$T/export.raw"
info "   writes go to the top only (partial clusters copy up from the chain)"
fio --name=c --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --offset=32M --size=24M \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --output="$T/fio.txt" ||
	{ cat "$T/fio.txt"; fail "fio verify on the chain"; }
qemu-io -f raw -c "write -P 0xe1 2101248 4k" -c "write -P 0xe2 10489856 8k" -c flush "$URI" >/dev/null
nbd_expect "2101248 4k 0xe1" "10489856 8k 0xe2"
nbdcopy "$URI" "$T/export.raw"
td_stop "$TD_PID" || fail "exit status (chain)"
[ "$(sha256sum "$T/chain/base.raw" "$T/chain/mid.qcow2")" = "$sum_before" ] ||
	fail "a backing file changed"
check_clean "$T/chain/top.qcow2"
qemu-img convert -f qcow2 -O raw "$T/chain/top.qcow2" "$T/qemu.raw"
cmp "$T/export.raw" "$T/qemu.raw" || fail "chain: qemu-img convert differs from our export"
rm -f "$T/export.raw" "$T/qemu.raw"

info "3b. Our overlay is used by QEMU too: a fresh image made by qemu-img over our image"
qemu-img create -q -f qcow2 -b top.qcow2 -F qcow2 "$T/chain/snap.qcow2"
td_serve "qcow2:$T/chain/snap.qcow2" "$SOCK"
nbd_expect "2101248 4k 0xe1" "12M 1M 0xc2"
td_stop "$TD_PID"

info "4. kill -9 during a write storm"
for run in "4k 1" "64k 2" "4k 3"; do
	set -- $run
	cs=$1 delay=$2
	img=$T/k.qcow2
	rm -f "$img"
	qemu-img create -q -f qcow2 -o cluster_size=$cs "$img" 2G
	td_serve "qcow2:$img" "$SOCK"
	qemu-io -f raw -c "write -P 0x5a 0 8M" -c "write -P 0x5b 2040M 4k" -c flush "$URI" \
		>/dev/null || fail "pre-kill writes"
	# allocating random writes, with flushes among them (writeback rounds)
	fio --name=storm --ioengine=nbd --uri="$URI" --rw=randwrite --bsrange=4k-64k \
		--iodepth=32 --offset=16M --size=2000M --fsync=64 --time_based --runtime=30 \
		--output="$T/storm.txt" >/dev/null 2>&1 &
	fio_pid=$!
	sleep "$delay"
	# a flush in the middle of the storm, then more writes, then the kill
	qemu-io -f raw -c "write -P 0x5c 12M 1M" -c flush "$URI" >/dev/null || fail "mid-storm flush"
	sleep 0.5
	kill -9 "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	wait "$fio_pid" 2>/dev/null
	rm -f "$SOCK" # left behind by the kill; td_serve waits for a new one
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "qemu-img check after kill -9 (rc $rc): $out"
	echo "$out" | grep -qE "^ERROR|corrupt" && fail "corruption after kill -9: $out"
	if [ $rc -eq 3 ]; then
		qemu-img check -q -r leaks "$img" >/dev/null 2>&1
		qemu-img check "$img" >/dev/null 2>&1 || fail "leaks not repaired"
	fi
	qemu-io -f qcow2 -c "read -P 0x5a 0 8M" -c "read -P 0x5b 2040M 4k" \
		-c "read -P 0x5c 12M 1M" "$img" 2>&1 | grep -qi "verification failed" &&
		fail "flushed data lost after kill -9"
	# the killed image (with any sparse tail) opens and grows again
	td_serve "qcow2:$img" "$SOCK"
	qemu-io -f raw -c "write -P 0x5d 1000M 1M" -c flush "$URI" >/dev/null || fail "write after kill -9"
	td_stop "$TD_PID" || fail "exit status after reopen"
	check_clean "$img"
	echo "   $cs clusters, kill after ${delay}s: check rc $rc (3: leaks, repaired), flushed data intact"
done
echo "qcow2 interop passed"
