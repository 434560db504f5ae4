#!/bin/bash
# Round trips through real NBD clients on aio: qemu-io patterns, nbdcopy of
# the whole disk, fio random writes with crc32c verification, nbdinfo size.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io nbdcopy nbdinfo fio

IMG=$T/disk.img
SOCK=$T/nbd.sock
truncate -s 256M "$IMG"
td_serve "aio:$IMG" "$SOCK"
URI=$(uri_of "$SOCK")

info "nbdinfo reports the size"
size=$(nbdinfo --size "$URI")
[ "$size" = 268435456 ] || fail "nbdinfo size $size"

info "qemu-io pattern writes and reads at several offsets (aligned and 512-byte)"
for spec in "0 64k 0x11" "1M 4k 0x22" "4194816 1536 0x33" "100M 1M 0x44" "268431360 4k 0x55" \
	"70144 1024 0x66"; do
	set -- $spec
	qemu-io -f raw -c "write -P $3 $1 $2" "$URI" >/dev/null || fail "write $spec"
done
for spec in "0 64k 0x11" "1M 4k 0x22" "4194816 1536 0x33" "100M 1M 0x44" "268431360 4k 0x55" \
	"70144 1024 0x66"; do
	set -- $spec
	qemu-io -f raw -c "read -P $3 $1 $2" "$URI" | grep -q "read" || fail "read $spec"
	qemu-io -f raw -c "read -P $3 $1 $2" "$URI" 2>&1 | grep -qi "pattern verification failed" &&
		fail "pattern mismatch at $spec"
done
# neighbours of the unaligned writes stay zero
qemu-io -f raw -c "read -P 0 4194304 512" -c "read -P 0 4196352 2048" "$URI" 2>&1 |
	grep -qi "verification failed" && fail "unaligned write touched its neighbours"

info "nbdcopy of the whole disk in both directions"
head -c 256M /dev/urandom >"$T/src.raw"
nbdcopy "$T/src.raw" "$URI" || fail "nbdcopy to server"
nbdcopy "$URI" "$T/back.raw" || fail "nbdcopy from server"
cmp "$T/src.raw" "$T/back.raw" || fail "nbdcopy round trip differs"
cmp "$T/src.raw" "$IMG" || fail "image file differs from what was written"

info "fio random writes with crc32c verification"
fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --size=64M \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 --output="$T/fio.txt" ||
	{ cat "$T/fio.txt"; fail "fio verify"; }
grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio reported errors"; }

info "clean shutdown on SIGTERM"
td_stop "$TD_PID" || fail "tapdisk exit status $?"
[ ! -S "$SOCK" ] || fail "socket left behind"

info "socket path claims: stale socket replaced, live one refused, other files kept"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$SOCK"
[ -S "$SOCK" ] || fail "could not make a stale socket"
td_serve "aio:$IMG" "$SOCK" # returns at once: the stale file is already there
for i in $(seq 1 100); do
	nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null 2>&1 && break
	kill -0 "$TD_PID" 2>/dev/null || fail "tapdisk exited instead of replacing a stale socket"
	sleep 0.1
done
nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null || fail "stale socket was not replaced"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "socket mode is $(stat -c %a "$SOCK"), not 600"
ls -a "$(dirname "$SOCK")" | grep -q '^\.td' && fail "private bind name left behind"
truncate -s 1M "$T/other.img"
tapdisk serve "aio:$T/other.img" --socket "$SOCK" 2>"$T/second.err" &&
	fail "a second server took a live socket"
grep -q "another server is listening" "$T/second.err" || { cat "$T/second.err"; fail "wrong error"; }
nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null || fail "first server lost its socket"
td_stop "$TD_PID" || fail "tapdisk exit status $?"
echo keep >"$T/notasock"
tapdisk serve "aio:$T/other.img" --socket "$T/notasock" 2>"$T/third.err" && fail "served over a regular file"
grep -q "not a socket" "$T/third.err" || { cat "$T/third.err"; fail "wrong error"; }
[ "$(cat "$T/notasock")" = keep ] || fail "a regular file was replaced"
echo "all round trips passed"
