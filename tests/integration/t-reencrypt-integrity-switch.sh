#!/bin/bash
# The end of an online volume-key rotation of an image WITH the integrity
# layer (docs/FORMAT.md "Volume-key rotation with the integrity layer",
# "The end (the switch)"): the tapdisk switches the integrity metadata and
# the header to the new key on its loop, as the last step of the pass,
# while it serves -- no pause/unpause, no restart.
#  1. fio write+verify rounds run before, during and after the pass and
#     the switch, none failing; once the pass is over, with the same
#     tapdisk still serving, the header and the live superblock are the
#     new key's and nothing of them verifies under the old key
#     (tests/lib/integ_keycheck.py --live: Python hmac, from FORMAT.md);
#     vdkey reencrypt --wait sees the end and logs it, vdkey audit --json
#     shows the rotation ended, the key-event log has reencrypt-end;
#     afterwards a fresh process reads the same data, every live MAC is
#     the new key's (integ_keycheck.py, full check), and the old volume key
#     put into the keyring by hand opens nothing; a second passphrase
#     keyslot kept with --keep-slot opens the new key, as the first does.
#  2. kill -9 inside the switch window (test build: the crypt option
#     test-switch-stall=1 stops the switch after its rekey checkpoint,
#     before the header commit): the header on disk is still the old
#     key's with the pass complete; the next open finishes the switch, and
#     every block reads back under the new key.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/rotation.sh"
need fio nbdcopy keyctl python3 cmp
python3 -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
rot_integrity_disk 72M "switch me online"

wait_log() { # wait_log PATTERN SECONDS
	local i
	for i in $(seq 1 $(($2 * 10))); do
		grep -q "$1" "$TAPDISK_RUNDIR/tapdisk.log" && return 0
		sleep 0.1
	done
	return 1
}

info "1. data, then fio write+verify rounds through the whole rotation"
td_serve "crypt:$LOWER" "$SOCK"
PID1=$TD_PID
rot_data_and_fio --fsync=16
tap-ctl pause -p "$TD_PID" >/dev/null || fail "pause"
# a second passphrase keyslot, kept by the rotation (its pending wrap moves
# over its wrap in the online switch's header commit)
printf 'second passphrase %s' "$RANDOM" >"$T/pass2"
vdkey enroll "$LOWER" --key-file "$KEY" --new-key-file "$T/pass2" --pbkdf pbkdf2 \
	--pbkdf-iterations 1000 >/dev/null || fail "enroll a second passphrase"
vdkey reencrypt "$LOWER" --key-file "$KEY" --keep-slot "1:$T/pass2" >"$T/start.txt" ||
	fail "reencrypt start: $(cat "$T/start.txt")"
keyctl pipe "$(keyctl search @u user "$DESC:next")" >"$T/new.key" || fail "new key"
tap-ctl unpause -p "$TD_PID" --next-key >/dev/null || fail "unpause --next-key"
r_at_start=$(cat "$T/rounds" 2>/dev/null || echo 0)
wait_log "volume-key rotation finished" 240 ||
	fail "no online end of the rotation: $(grep -i rotation "$TAPDISK_RUNDIR/tapdisk.log" | tail -3)"
r_at_switch=$(cat "$T/rounds" 2>/dev/null || echo 0)
[ "$TD_PID" = "$PID1" ] && kill -0 "$TD_PID" || fail "the tapdisk is not the one that started"
# two opens: the start and the unpause --next-key, none after the pass
[ "$(grep -c "unlocked" "$TAPDISK_RUNDIR/tapdisk.log")" = 2 ] ||
	fail "the image was opened again: $(grep unlocked "$TAPDISK_RUNDIR/tapdisk.log")"

info "the same tapdisk still serving: the header and the live superblock are the new key's"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/new.key" "$T/old.key" --live ||
	fail "header/superblock not the new key's while serving"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/old.key" "$T/new.key" --live \
	>/dev/null 2>&1 && fail "the old key still verifies the header"
vdkey reencrypt "$LOWER" --status | grep -q "no volume-key rotation" ||
	fail "status after the switch: $(vdkey reencrypt "$LOWER" --status)"
vdkey reencrypt "$LOWER" --wait --timeout 60 >"$T/wait.txt" || fail "wait: $(cat "$T/wait.txt")"
grep -q "complete" "$T/wait.txt" || fail "wait output: $(cat "$T/wait.txt")"
vdkey audit "$LOWER" --json >"$T/audit.json" || fail "audit: $(cat "$T/audit.json")"
python3 - "$T/audit.json" <<'PY' || fail "audit: $(cat "$T/audit.json")"
import json, sys
r = json.load(open(sys.argv[1]))["rotation"]
sys.exit(0 if r["in_progress"] is False and r["last_end"] and r["last_end"] >= r["last_start"] else 1)
PY
vdkey log "$LOWER" --json >"$T/log.json" || fail "vdkey log"
grep -q '"reencrypt-end"' "$T/log.json" || fail "no reencrypt-end in the key-event log: $(cat "$T/log.json")"
r_at_end=$(cat "$T/rounds" 2>/dev/null || echo 0)
while [ "$(cat "$T/rounds")" -le "$((r_at_end + 1))" ]; do sleep 0.5; done
rot_fio_stop
info "fio rounds: $r_at_start at the unpause, $r_at_switch at the switch, $(cat "$T/rounds") in all"
# a round is always in flight: the one at the unpause ran through the
# pass and the switch, two more ran after it
[ "$(cat "$T/rounds")" -ge "$((r_at_start + 2))" ] || fail "fio did not run through the pass"
nbdcopy "$URI" "$T/after.raw" || fail "nbdcopy out"
cmp <(head -c 32M "$T/after.raw") "$T/before.raw" || fail "data changed by the rotation"
td_stop "$TD_PID" || fail "stop"
td_serve "crypt:$LOWER" "$SOCK"
nbdcopy "$URI" "$T/after2.raw" || fail "nbdcopy out (fresh process)"
cmp "$T/after.raw" "$T/after2.raw" || fail "data differs in a fresh process"
td_stop "$TD_PID" || fail "stop 2"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/new.key" "$T/old.key" ||
	fail "independent MAC check"
vdkey unload "$LOWER" >/dev/null
# both keyslots open the new key, and only it
for f in "$KEY" "$T/pass2"; do
	vdkey load "$LOWER" --key-file "$f" >/dev/null || fail "load with $(basename "$f") after the switch"
	keyctl pipe "$(keyctl search @u user "$DESC")" | cmp -s - "$T/new.key" ||
		fail "keyslot of $(basename "$f") does not open the new key"
	vdkey unload "$LOWER" >/dev/null
done
rot_old_key_refused "$T/old.key"

info "2. kill -9 inside the switch window (after the rekey checkpoint, before the header)"
use_test_build
rm -f "$T/stop" "$T/rounds" "$T/fio-failed"
rm -f "$T/disk.img"
crypt_aio_disk 48M "kill me in the switch"
LOWER=aio:$IMG
DESC=$(key_desc "$LOWER")
keyctl pipe "$(keyctl search @u user "$DESC")" >"$T/old2.key" || fail "read the old key (2)"
: >"$TAPDISK_RUNDIR/tapdisk.log"
td_serve "crypt,test-switch-stall=1:$LOWER" "$SOCK"
head -c 40M /dev/urandom >"$T/exp.raw"
nbdcopy "$T/exp.raw" "$URI" || fail "nbdcopy in (2)"
tap-ctl pause -p "$TD_PID" >/dev/null || fail "pause (2)"
vdkey reencrypt "$LOWER" --key-file "$KEY" >/dev/null || fail "reencrypt start (2)"
keyctl pipe "$(keyctl search @u user "$DESC:next")" >"$T/new2.key" || fail "new key (2)"
tap-ctl unpause -p "$TD_PID" --next-key >/dev/null || fail "unpause --next-key (2)"
wait_log "the switch stops before the header commit" 240 || fail "the switch did not reach its window"
grep -q "generation [0-9]* are under the new volume key" "$TAPDISK_RUNDIR/tapdisk.log" ||
	fail "no rekey checkpoint before the stall"
NB2=$(($(vdkey list "$LOWER" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_size"])') / 4096))
vdkey reencrypt "$LOWER" --status | grep -q "^rotating: block $NB2 of" ||
	fail "the header is not the old key's in the window: $(vdkey reencrypt "$LOWER" --status)"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/old2.key" "$T/new2.key" --live \
	>"$T/kc.txt" 2>&1
grep -q "a rotation record is still there" "$T/kc.txt" || fail "window state: $(cat "$T/kc.txt")"
# and the rekey checkpoint's superblock (generation e+1) is on disk, under
# the new key, newer than the old key's
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/new2.key" "$T/old2.key" --live \
	>"$T/kc2.txt" 2>&1
read -r g_new g_old < <(sed -n 's/.*generation \([0-9]*\) under the good key, newest under the bad key: \([0-9]*\)$/\1 \2/p' "$T/kc2.txt")
[ -n "$g_new" ] && [ "$g_new" = "$((g_old + 1))" ] ||
	fail "no superblock e+1 under the new key in the window: $(cat "$T/kc2.txt")"
info "in the window: header the old key's (pass complete), superblock $g_new the new key's, $g_old the old key's"
kill -9 "$TD_PID"
wait "$TD_PID" 2>/dev/null
rm -f "$SOCK"
: >"$TAPDISK_RUNDIR/tapdisk.log"
td_serve "crypt:$LOWER" "$SOCK"
grep -q "volume-key rotation finished; the old key opens nothing now" "$TAPDISK_RUNDIR/tapdisk.log" ||
	fail "the open did not finish the switch: $(tail -5 "$TAPDISK_RUNDIR/tapdisk.log")"
nbdcopy "$URI" "$T/back.raw" || fail "nbdcopy out after the kill"
cmp <(head -c 40M "$T/back.raw") "$T/exp.raw" || fail "data differs after the kill"
td_stop "$TD_PID" || fail "stop (2)"
python3 "$TD_SRC/tests/lib/integ_keycheck.py" "$IMG" "$T/new2.key" "$T/old2.key" ||
	fail "independent MAC check after the kill"
echo "PASS"
