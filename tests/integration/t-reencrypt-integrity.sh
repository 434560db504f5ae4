#!/bin/bash
# Volume-key rotation of an image WITH the integrity layer (the default
# format: hmac-sha256, freshness tree v2; docs/FORMAT.md "Volume-key
# rotation with the integrity layer"), kill -9 of the tapdisk at random
# points while a client writes and flushes patterns:
#  - after each kill, every block outside a staged window decrypts to the
#    expected data under exactly the key the boundary names (independent
#    decryptor, tests/lib/reenc_check.py);
#  - each restart resumes (replaying the journal with the per-block tag
#    key, redoing a staged window through the integrity layer) and every
#    block reads back through the integrity layer with the expected data
#    (no EIO: the tags moved with the data);
#  - the final switch (tree, superblock, journal under the new key, then
#    the header) happens at the open after the last window; afterwards
#    every block reads back in a fresh process, the trusted generation
#    check passes, no tag, superblock or tree hash verifies under the old
#    key's subkeys (tests/lib/integ_keycheck.py, Python hmac), and the old
#    volume key put into the keyring by hand opens nothing.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/rotation.sh"
need nbdcopy keyctl python3 qemu-io cmp
python3 -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
crypt_aio_disk 80M "crash me with tags"
LOWER=aio:$IMG
vdkey list "$LOWER" --json | grep -q '"integrity": *"hmac-sha256"' ||
	fail "the default format has no integrity layer: $(vdkey list "$LOWER" --json)"
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
	nbdcopy "$URI" "$T/back.raw" || fail "nbdcopy out ($1): $(tail -5 "$TAPDISK_RUNDIR/tapdisk.log")"
	cmp "$T/back.raw" "$EXP" || fail "data differs ($1)"
	rm -f "$T/back.raw"
}

vdkey reencrypt "$LOWER" --key-file "$KEY" >/dev/null || fail "reencrypt start"
keyctl pipe "$(keyctl search @u user "$DESC")" >"$T/old.key" || fail "old key"
keyctl pipe "$(keyctl search @u user "$DESC:next")" >"$T/new.key" || fail "new key"
info "the MAC checker is sound: before the pass everything verifies under the old key only"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/old.key" "$T/new.key" --strict ||
	fail "independent MAC check before the pass"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/new.key" "$T/old.key" >/dev/null 2>&1 &&
	fail "the MAC checker accepted the new key before the pass"
kills=0
staged=0
for i in $(seq 1 30); do
	td_serve "crypt:$LOWER" "$SOCK"
	read_all "after restart $i"
	rot_write_and_kill "$i" "$EXP" 2
	kills=$((kills + 1))
	read -r B W < <(state)
	[ -n "$B" ] || fail "no state after kill $i"
	[ "$W" != 0 ] && staged=$((staged + 1))
	info "kill $i: boundary $B of $NB, staged window $W"
	check_blocks "$B" "$W"
	[ "$B" = "$NB" ] && break
done
[ "$B" = "$NB" ] || fail "the pass did not reach the end in $kills restarts"
info "$kills kills, $staged of them with a staged window"
info "the next open switches the integrity metadata and the header to the new key"
td_serve "crypt:$LOWER" "$SOCK"
grep -q "volume-key rotation finished" "$TAPDISK_RUNDIR/tapdisk.log" || fail "no finish at open"
vdkey reencrypt "$LOWER" --wait --timeout 60 >/dev/null || fail "wait"
read_all "after the switch"
td_stop "$TD_PID" || fail "stop after the switch"
check_blocks "$NB" 0
td_serve "crypt:$LOWER" "$SOCK"
read_all "fresh process"
td_stop "$TD_PID" || fail "stop fresh"

info "no MAC of the integrity metadata verifies under the old key"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/new.key" "$T/old.key" ||
	fail "independent MAC check"

info "the old volume key, put into the keyring by hand, opens nothing"
rot_old_key_refused "$T/old.key"
echo "PASS"
