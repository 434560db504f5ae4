#!/bin/bash
# Whole-image rollback (issue 9, "Must show" 2): copy the image file, write
# and close, put the copy back. A read-write open is refused naming both
# generations; a read-only open (what a snapshot is) is allowed with a
# warning; 'vdkey audit --json' reports the rollback; 'vdkey
# accept-rollback' lets the image open again and is in the key-event log
# (verified); its refusal without the key is logged as a failure.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl python3
LOG=$TAPDISK_RUNDIR/tapdisk.log
crypt_aio_disk 64M 'rollback test'
fresh() { # KEY -> the value of freshness.KEY in vdkey audit --json
	vdkey audit "aio:$IMG" --json | python3 -c '
import json, sys; print(json.dumps(json.load(sys.stdin)["freshness"][sys.argv[1]]))' "$1"
}

info "generation moves forward at each close that wrote"
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -P 0x11 0 64k" "$URI" >/dev/null || fail "write 1"
td_stop "$TD_PID" || fail "stop 1"
g1=$(fresh generation)
[ "$(fresh trusted_generation)" = "$g1" ] || fail "trusted generation $(fresh trusted_generation) != $g1"
[ "$(fresh tree_root_verified)" = true ] || fail "tree root not verified"
cp --sparse=always "$IMG" "$T/copy.img"
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -P 0x22 0 64k" "$URI" >/dev/null || fail "write 2"
td_stop "$TD_PID" || fail "stop 2"
g2=$(fresh generation)
[ "$g2" -gt "$g1" ] || fail "generation did not move: $g1 -> $g2"
info "generations $g1 (copy) -> $g2 (now)"

info "put the copy back: a read-write open is refused naming both generations"
cp --sparse=always "$T/copy.img" "$IMG"
[ "$(fresh rollback)" = true ] || fail "audit does not report the rollback"
vdkey audit "aio:$IMG" >/dev/null && fail "audit of a rolled-back image exited 0"
from=$(($(stat -c %s "$LOG") + 1))
if tapdisk serve "crypt:aio:$IMG" --socket "$SOCK" 2>>"$LOG"; then
	fail "a rolled-back image was served"
fi
msg=$(tail -c +"$from" "$LOG" | grep "rolled back" || true)
[ -n "$msg" ] || fail "no rollback message: $(tail -c +"$from" "$LOG")"
grep -q "generation is $g1" <<<"$msg" && grep -q "seen generation $g2" <<<"$msg" ||
	fail "the message does not name both generations: $msg"
grep -q "accept-rollback" <<<"$msg" || fail "the message does not say what to do: $msg"
info "refused: $msg"
rm -f "$SOCK"

info "read-only open (a snapshot) is allowed, with a warning, and reads the old data"
td_serve "crypt:aio:$IMG" "$SOCK" --readonly
qemu-io -f raw -r -c "read -P 0x11 0 64k" "$URI" 2>&1 | grep -qi "fail\|mismatch" &&
	fail "read-only open of the old copy does not read its data"
td_stop "$TD_PID" || fail "stop ro"
grep -q "opened read-only at generation $g1, older" "$LOG" || fail "no read-only warning"

info "accept-rollback without the right passphrase changes nothing and is logged"
printf 'wrong' >"$T/wrong"
vdkey accept-rollback "aio:$IMG" --key-file "$T/wrong" >/dev/null 2>&1 &&
	fail "accept-rollback with a wrong passphrase succeeded"
[ "$(fresh rollback)" = true ] || fail "a failed accept-rollback changed the trusted generation"

info "accept-rollback: the image opens again, and the event is in the verified log"
vdkey accept-rollback "aio:$IMG" --key-file "$KEY" | grep -q "$g2 -> $g1" ||
	fail "accept-rollback did not report $g2 -> $g1"
[ "$(fresh rollback)" = false ] || fail "still a rollback after accept-rollback"
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "read -P 0x11 0 64k" -c "write -P 0x33 0 4k" "$URI" 2>&1 |
	grep -qi "fail\|mismatch" && fail "the accepted image does not work"
td_stop "$TD_PID" || fail "stop 3"
vdkey log "aio:$IMG" --json | python3 -c '
import json, sys
ents = json.load(sys.stdin)
ents = ents["entries"] if isinstance(ents, dict) else ents
ar = [e for e in ents if e["op"] == "accept-rollback"]
assert [e["outcome"] for e in ar] == ["fail", "ok"], ar
' || fail "accept-rollback events (fail, ok) not in the log"
vdkey log "aio:$IMG" --verify --key-file "$KEY" >/dev/null || fail "the log does not verify"
echo ok
