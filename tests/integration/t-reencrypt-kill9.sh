#!/bin/bash
# Volume-key rotation survives crashes (docs/FORMAT.md, "Volume-key
# rotation", "Why a crash never leaves a block unreadable or under the
# wrong key"):
#  A. deterministic: the mover stops (a write fails, test driver `fault`)
#     right after commit point 1 of the second window (guest I/O to that
#     window then fails with EIO, the rest of the disk works); the in-place copy
#     of that window is then overwritten with garbage (a torn write of any
#     shape); a changed staging area refuses the open; the next open redoes
#     the window from the staging area and the pass completes with every
#     block as written;
#  B. a second rotation on the same image, kill -9 of the tapdisk at
#     random points while a client writes and flushes patterns: after each
#     kill every block outside a staged window decrypts to the expected
#     data under exactly the key the header's boundary names, checked by
#     an independent decryptor (tests/lib/reenc_check.py, Python
#     cryptography); each restart resumes, the flushed writes survive, and
#     the end state reads back intact.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/rotation.sh"
need nbdcopy keyctl python3 qemu-io cmp
python3 -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
use_test_build
crypt_aio_disk 80M "crash me" --integrity none
LOWER=aio:$IMG
DESC=$(key_desc "$LOWER")
DS=$(vdkey list "$LOWER" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_size"])')
DOFF=$(vdkey list "$LOWER" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_offset"])')
NB=$((DS / 4096))
EXP=$T/expected.raw

info "data before the rotation"
head -c 48M /dev/urandom >"$EXP"
truncate -s "$DS" "$EXP"
td_serve "crypt:$LOWER" "$SOCK"
nbdcopy "$EXP" "$URI" || fail "nbdcopy in"
td_stop "$TD_PID" || fail "stop"

keys() {
	keyctl pipe "$(keyctl search @u user "$DESC")" >"$T/old.key" || fail "old key"
	keyctl pipe "$(keyctl search @u user "$DESC:next")" >"$T/new.key" || fail "new key"
}
# state -> B W (B = NB when finished)
state() {
	local s
	s=$(vdkey reencrypt "$LOWER" --status 2>/dev/null) || fail "status"
	if echo "$s" | grep -q "no volume-key rotation"; then
		echo "$NB 0"
	else
		echo "$s" | sed -n 's/^rotating: block \([0-9]*\) of .*staged window: \([0-9]*\) blocks$/\1 \2/p'
	fi
}
check_blocks() {
	python3 "$TD_SRC/tests/lib/reenc_check.py" "$IMG" "$DOFF" "$EXP" "$T/old.key" "$T/new.key" \
		"$@" || fail "per-block key check ($*)"
}
read_all() {
	nbdcopy "$URI" "$T/back.raw" || fail "nbdcopy out ($1)"
	cmp "$T/back.raw" "$EXP" || fail "data differs ($1)"
	rm -f "$T/back.raw"
}

info "A: the mover stops after commit point 1 of window 2"
vdkey reencrypt "$LOWER" --key-file "$KEY" >/dev/null || fail "start A"
keys
# writes per window: staging, 2 header copies, in place, 2 header copies;
# the 10th write is window 2's in-place write
td_serve "crypt:fault,op=write,fail_after=9:$LOWER" "$SOCK"
for i in $(seq 1 100); do
	grep -q "volume-key rotation stopped" "$TAPDISK_RUNDIR/tapdisk.log" && break
	sleep 0.1
done
grep -q "volume-key rotation stopped at block 128" "$TAPDISK_RUNDIR/tapdisk.log" ||
	fail "the mover did not stop at window 2"
info "guest I/O to the window whose move failed gets EIO, the rest works"
out=$(qemu-io -f raw -c "read 512k 4k" "$URI" 2>&1)
echo "$out" | grep -qi "error" || fail "a read of the fenced window worked: $out"
out=$(qemu-io -f raw -c "write -P 7 600k 4k" "$URI" 2>&1)
echo "$out" | grep -qi "error" || fail "a write into the fenced window worked: $out"
qemu-io -f raw -c "read 0 4k" -c "read 1M 4k" "$URI" 2>&1 | grep -qi error &&
	fail "reads outside the fenced window failed"
td_stop "$TD_PID" || fail "stop A"
read -r B W < <(state)
[ "$B $W" = "128 128" ] || fail "state after the stop: B=$B W=$W, want 128 128"
check_blocks "$B" "$W"
info "garbage over the window in place (whatever a crash leaves there)"
dd if=/dev/urandom of="$IMG" bs=4096 seek=$((DOFF / 4096 + 128)) count=128 conv=notrunc 2>/dev/null
info "a changed staging area refuses the open"
STG=262144
dd if="$IMG" of="$T/stg.save" bs=4096 skip=$((STG / 4096)) count=1 2>/dev/null
printf '\x01' | dd of="$IMG" bs=1 seek=$((STG + 100)) conv=notrunc 2>/dev/null
out=$(tapdisk serve "crypt:$LOWER" --socket "$SOCK" 2>&1) && fail "opened with a changed staging area"
echo "$out" | grep -q "staging area does not match its digest" || fail "message: $out"
dd if="$T/stg.save" of="$IMG" bs=4096 seek=$((STG / 4096)) conv=notrunc 2>/dev/null
info "the next open redoes the window; the pass completes"
td_serve "crypt:$LOWER" "$SOCK"
grep -q "redid the reencryption window 128..255" "$TAPDISK_RUNDIR/tapdisk.log" || fail "no redo"
vdkey reencrypt "$LOWER" --wait --timeout 120 >/dev/null || fail "wait A"
read_all "after A"
td_stop "$TD_PID" || fail "stop A2"
check_blocks "$NB" 0

info "B: a second rotation, kill -9 at random points with client writes"
vdkey reencrypt "$LOWER" --key-file "$KEY" >/dev/null || fail "start B"
keys
kills=0
staged=0
for i in $(seq 1 12); do
	td_serve "crypt:$LOWER" "$SOCK"
	rot_write_and_kill "$i" "$EXP" 3
	kills=$((kills + 1))
	read -r B W < <(state)
	[ -n "$B" ] || fail "no state after kill $i"
	[ "$W" != 0 ] && staged=$((staged + 1))
	info "kill $i: boundary $B of $NB, staged window $W"
	check_blocks "$B" "$W"
	[ "$B" = "$NB" ] && break
done
info "$kills kills, $staged of them with a staged window"
td_serve "crypt:$LOWER" "$SOCK"
vdkey reencrypt "$LOWER" --wait --timeout 120 >/dev/null || fail "wait B"
read_all "after B"
td_stop "$TD_PID" || fail "stop B"
check_blocks "$NB" 0
td_serve "crypt:$LOWER" "$SOCK"
read_all "fresh process"
td_stop "$TD_PID" || fail "stop C"
echo "PASS"
