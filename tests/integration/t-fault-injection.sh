#!/bin/bash
# Errors injected below the VBD come back to clients as NBD errors, are
# counted in stats, and the server keeps serving.
. "$TD_SRC/tests/lib/common.sh"
use_test_build # the fault driver
need qemu-io
IMG=$T/disk.img
SOCK=$T/nbd.sock
truncate -s 16M "$IMG"
URI=$(uri_of "$SOCK")

info "reads of block 10 fail with EIO, the rest work"
td_serve "fault,fail_block=10,op=read:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -P 0x5a 0 1M" "$URI" >/dev/null || fail "write"
out=$(qemu-io -f raw -c "read 40960 4096" "$URI" 2>&1)
echo "$out" | grep -qi "input/output error" || fail "expected EIO, got: $out"
qemu-io -f raw -c "read -P 0x5a 36864 4096" -c "read -P 0x5a 45056 4096" "$URI" 2>&1 |
	grep -qiE "error|fail" && fail "neighbour read failed"
errs=$(stat_of -p "$TD_PID" errors)
[ "${errs:-0}" -ge 1 ] || fail "errors not counted (got '$errs')"
kill -0 "$TD_PID" || fail "tapdisk died"
td_stop "$TD_PID" || fail "exit status"

info "every write after the 2nd fails with ENOSPC"
td_serve "fault,fail_after=2,op=write,err=enospc:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -P 1 0 4k" -c "write -P 2 4k 4k" "$URI" >/dev/null || fail "first writes"
out=$(qemu-io -f raw -c "write -P 3 8k 4k" "$URI" 2>&1)
echo "$out" | grep -qiE "no space|error" || fail "expected ENOSPC, got: $out"
qemu-io -f raw -c "read -P 2 4k 4k" "$URI" 2>&1 | grep -qiE "verification failed|error" &&
	fail "data lost"
errs=$(stat_of -p "$TD_PID" errors)
[ "${errs:-0}" -ge 1 ] || fail "errors not counted"
td_stop "$TD_PID" || fail "exit status"

info "a failing flush is reported"
td_serve "fault,fail_nth=1,op=flush:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -P 4 0 4k" -c "flush" "$URI" && fail "flush error not reported"
kill -0 "$TD_PID" || fail "tapdisk died"
td_stop "$TD_PID" || true

info "bad fault options are refused with a message"
out=$(tapdisk serve "fault,bogus=1:aio:$IMG" --socket "$T/x.sock" 2>&1) && fail "accepted bad option"
echo "$out" | grep -q "bad option" || fail "message: $out"
echo ok
