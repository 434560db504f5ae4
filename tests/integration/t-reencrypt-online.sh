#!/bin/bash
# Online volume-key rotation (docs/FORMAT.md, "Volume-key rotation") of a
# served VBD: tap-ctl pause, vdkey reencrypt, tap-ctl unpause --next-key
# (refused without it); the tapdisk moves every block while fio writes and
# verifies through NBD the whole time, pause included (complete
# write+verify rounds before, during and after the pass, none failing); data written before the rotation
# reads back unchanged, its ciphertext changed; the second passphrase's
# slot, dropped with --drop-slot 1, is gone afterwards: only slot 0 is
# left, the other passphrase and the old volume key (put
# back into the keyring by hand) open nothing, and the key-event log
# holds reencrypt-start, reencrypt-progress and reencrypt-end.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/rotation.sh"
need fio nbdcopy keyctl python3 cmp
crypt_aio_disk 72M "rotate me" --integrity none
LOWER=aio:$IMG
printf 'second passphrase %s' "$RANDOM" >"$T/pass2"
vdkey enroll "$LOWER" --key-file "$KEY" --new-key-file "$T/pass2" --pbkdf pbkdf2 \
	--pbkdf-iterations 1000 >/dev/null || fail "enroll"
DESC=$(key_desc "$LOWER")
keyctl pipe "$(keyctl search @u user "$DESC")" >"$T/oldkey" || fail "read the old key"
[ "$(stat -c %s "$T/oldkey")" = 65 ] || fail "old key payload size"

info "data written before the rotation; fio write+verify rounds start"
td_serve "crypt:$LOWER" "$SOCK"
rot_data_and_fio

info "pause, start the rotation, unpause with the new key: the VBD moves every block"
tap-ctl pause -p "$TD_PID" >/dev/null || fail "pause"
dd if="$IMG" bs=1M skip=1 count=32 of="$T/ct-before" 2>/dev/null
vdkey reencrypt "$LOWER" --key-file "$KEY" --drop-slot 1 >"$T/start.txt" || fail "reencrypt start"
grep -q "re-wrapped keyslots 0; dropped at the end: keyslot 1" "$T/start.txt" ||
	fail "start output: $(cat "$T/start.txt")"
vdkey reencrypt "$LOWER" --status | grep -q "^rotating: block 0 of" || fail "status"
out=$(vdkey load "$LOWER" --key-file "$T/pass2" 2>&1) && fail "the second passphrase loaded during the pass: $out"
echo "$out" | grep -q "does not open its new key" || fail "message: $out"
out=$(vdkey remove "$LOWER" --key-file "$KEY" --slot 1 2>&1) && fail "removed a keyslot during the pass"
echo "$out" | grep -q "rotation is under way" || fail "remove message: $out"
out=$(tap-ctl unpause -p "$TD_PID" 2>&1) && fail "unpaused without the new key: $out"
echo "$out" | grep -q "new key is not loaded\|cannot get its new key" || fail "unpause message: $out"
vdkey audit "$LOWER" --json | python3 -c 'import json,sys
r = json.load(sys.stdin)["rotation"]
assert r["in_progress"] and r["boundary"] == 0 and r["last_start"] and r["last_end"] is None, r' || fail "audit during the pass"
tap-ctl unpause -p "$TD_PID" --next-key >/dev/null || fail "unpause --next-key"
r_at_start=$(cat "$T/rounds" 2>/dev/null || echo 0)
vdkey reencrypt "$LOWER" --wait --timeout 240 >"$T/wait.txt" || fail "wait: $(cat "$T/wait.txt")"
grep -q "complete" "$T/wait.txt" || fail "wait output: $(cat "$T/wait.txt")"
r_at_end=$(cat "$T/rounds" 2>/dev/null || echo 0)
rot_fio_stop
rounds=$(cat "$T/rounds")
info "fio rounds: $r_at_start done at the unpause, $r_at_end when the pass ended, $rounds in all"
[ "$rounds" -gt "$r_at_end" ] && [ "$r_at_end" -gt "$r_at_start" ] ||
	fail "fio did not run (and complete rounds) through the whole pass"
grep -q "volume-key rotation finished" "$TAPDISK_RUNDIR/tapdisk.log" || fail "no end in the log"

info "the data from before reads back; its ciphertext changed"
nbdcopy "$URI" "$T/after.raw" || fail "nbdcopy out"
cmp <(head -c 32M "$T/after.raw") "$T/before.raw" || fail "data changed by the rotation"
dd if="$IMG" bs=1M skip=1 count=32 of="$T/ct-after" 2>/dev/null
cmp -s "$T/ct-before" "$T/ct-after" && fail "ciphertext did not change"
rot_ciphertext_changed "$T/ct-before" "$T/ct-after"
td_stop "$TD_PID" || fail "stop after the pass"

info "a fresh tapdisk with the new key reads the same"
td_serve "crypt:$LOWER" "$SOCK"
nbdcopy "$URI" "$T/after2.raw" || fail "nbdcopy out 2"
cmp "$T/after.raw" "$T/after2.raw" || fail "data differs in a fresh process"
td_stop "$TD_PID" || fail "stop 2"

info "only the new key's slot is left; the second passphrase opens nothing"
vdkey reencrypt "$LOWER" --status | grep -q "no volume-key rotation" || fail "status after"
n=$(vdkey list "$LOWER" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keyslots_active"])')
[ "$n" = 1 ] || fail "$n active keyslots after the rotation"
vdkey unload "$LOWER" >/dev/null
vdkey load "$LOWER" --key-file "$T/pass2" >/dev/null 2>&1 && fail "the dropped slot's passphrase still loads"
vdkey load "$LOWER" --key-file "$KEY" >/dev/null || fail "the rotation's passphrase does not load"

info "the old volume key, put into the keyring by hand, opens nothing"
rot_old_key_refused "$T/oldkey"

vdkey audit "$LOWER" --json | python3 -c 'import json,sys
r = json.load(sys.stdin)["rotation"]
assert not r["in_progress"] and r["last_end"] >= r["last_start"] > 0, r' || fail "audit after the pass"
info "the key-event log: start, progress, end"
vdkey log "$LOWER" >"$T/log.txt" || fail "log"
for op in reencrypt-start reencrypt-progress reencrypt-end; do
	grep -q "$op" "$T/log.txt" || { cat "$T/log.txt"; fail "no $op in the key-event log"; }
done
echo "PASS"
