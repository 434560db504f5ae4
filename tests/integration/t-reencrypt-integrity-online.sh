#!/bin/bash
# Online volume-key rotation of a served VBD whose image has the integrity
# layer (the default format; docs/FORMAT.md "Volume-key rotation with the
# integrity layer"): fio writes and verifies through NBD during the whole
# pass (complete write+verify rounds before, during and after it, none
# failing); the tags move with the data (every block reads back through
# the integrity layer); after the last window the tapdisk switches the
# tree, superblock, journal and header to the new key while it serves (no
# reopen: t-reencrypt-integrity-switch checks that in detail); the
# data from before reads back, its ciphertext changed; no live MAC
# verifies under the old key (tests/lib/integ_keycheck.py), the old key
# loaded by hand opens nothing, the trusted generation follows.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/rotation.sh"
need fio nbdcopy keyctl python3 cmp
python3 -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
rot_integrity_disk 72M "rotate me with tags"

info "data written before the rotation; fio write+verify rounds start"
td_serve "crypt:$LOWER" "$SOCK"
rot_data_and_fio

info "pause, start the rotation, unpause with the new key: the VBD moves every block"
tap-ctl pause -p "$TD_PID" >/dev/null || fail "pause"
dd if="$IMG" bs=1M skip=1 count=32 of="$T/ct-before" 2>/dev/null
vdkey reencrypt "$LOWER" --key-file "$KEY" >"$T/start.txt" || fail "reencrypt start: $(cat "$T/start.txt")"
keyctl pipe "$(keyctl search @u user "$DESC:next")" >"$T/new.key" || fail "new key"
tap-ctl unpause -p "$TD_PID" --next-key >/dev/null || fail "unpause --next-key"
r_at_start=$(cat "$T/rounds" 2>/dev/null || echo 0)
for i in $(seq 1 2400); do
	grep -q "volume-key rotation moved every block" "$TAPDISK_RUNDIR/tapdisk.log" && break
	sleep 0.1
done
grep -q "volume-key rotation moved every block" "$TAPDISK_RUNDIR/tapdisk.log" ||
	fail "the pass did not reach the end"
# at least one complete fio round during the pass and after its end
r_mid=$(cat "$T/rounds" 2>/dev/null || echo 0)
info "the switch of the integrity metadata and the header runs on the loop"
vdkey reencrypt "$LOWER" --wait --timeout 60 >"$T/wait.txt" || fail "wait: $(cat "$T/wait.txt")"
grep -q "complete" "$T/wait.txt" || fail "wait output: $(cat "$T/wait.txt")"
r_at_end=$(cat "$T/rounds" 2>/dev/null || echo 0)
while [ "$(cat "$T/rounds")" -le "$((r_at_end + 1))" ]; do sleep 0.5; done
rot_fio_stop
rounds=$(cat "$T/rounds")
info "fio rounds: $r_at_start at the unpause, $r_mid when every block had moved, $r_at_end after the switch, $rounds in all"
# a round is always in flight: the one at the unpause ran through the pass
# and the switch (a pass of this size takes about a second), two after it
[ "$rounds" -ge "$((r_at_start + 2))" ] || fail "fio did not run through the pass"
grep -q "volume-key rotation finished" "$TAPDISK_RUNDIR/tapdisk.log" || fail "no end in the log"

info "the data from before reads back; its ciphertext changed"
nbdcopy "$URI" "$T/after.raw" || fail "nbdcopy out"
cmp <(head -c 32M "$T/after.raw") "$T/before.raw" || fail "data changed by the rotation"
dd if="$IMG" bs=1M skip=1 count=32 of="$T/ct-after" 2>/dev/null
rot_ciphertext_changed "$T/ct-before" "$T/ct-after"
td_stop "$TD_PID" || fail "stop after the pass"

info "a fresh tapdisk (generation check included) reads the same"
td_serve "crypt:$LOWER" "$SOCK"
nbdcopy "$URI" "$T/after2.raw" || fail "nbdcopy out 2"
cmp "$T/after.raw" "$T/after2.raw" || fail "data differs in a fresh process"
td_stop "$TD_PID" || fail "stop 2"

info "no live MAC verifies under the old key"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/new.key" "$T/old.key" ||
	fail "independent MAC check"
info "the old volume key, put into the keyring by hand, opens nothing"
rot_old_key_refused "$T/old.key"
echo "PASS"
