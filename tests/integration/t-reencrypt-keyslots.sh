#!/bin/bash
# A volume-key rotation keeps the image's other keyslots (docs/FORMAT.md,
# "Volume-key rotation", "Pending wraps"): an image with two passphrase
# slots, a TPM2 slot (a real swtpm) and a Tang slot (a real tangd) is
# rotated online (served by tapdisk, pause / reencrypt / unpause
# --next-key) keeping all four, with a kill -9 of the tapdisk during the
# pass (the slots and their pending wraps survive it, and the second
# passphrase and the TPM slot each load both keys after it). Afterwards
# every slot loads the NEW key (each way: both passphrases, the TPM, the
# Tang server) and the data reads back through tapdisk; the old key opens nothing. Refusals
# change nothing in the header: a Tang server down (the message names the
# slot), a passphrase slot with no passphrase given and no terminal, a
# wrong --keep-slot passphrase. A second rotation with Tang down and
# --drop-slot 3 drops that slot; audit --json and the key-event log show
# which slots were re-wrapped and which dropped.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/rotation.sh"
need swtpm tpm2_pcrread socat jose curl keyctl nbdcopy python3 cmp
TANGD=/usr/libexec/tangd
KEYGEN=/usr/libexec/tangd-keygen
[ -x "$TANGD" ] && [ -x "$KEYGEN" ] || skip "tang is not installed (Debian package tang)"

. "$TD_SRC/tests/lib/tokens.sh"

info "a software TPM and a tang server on 127.0.0.1"
start_swtpm tpm
TPMPORT=$PORT
export TPM2TOOLS_TCTI=$TCTI_tpm
TANGPORT=$(free_port)
mkdir -p "$T/tang"
"$KEYGEN" "$T/tang" 2>/dev/null || fail "tangd-keygen"
tang_start tang "$TANGPORT"
URL="http://127.0.0.1:$TANGPORT"
TP=$(tang_thp "$TANGPORT")

crypt_aio_disk 64M "rotate keep" --integrity none
LOWER=aio:$IMG
DESC=$(key_desc "$LOWER")
FAST="--pbkdf pbkdf2 --pbkdf-iterations 1000"
printf 'second passphrase %s' "$RANDOM" >"$T/pass2"
vdkey enroll "$LOWER" --key-file "$KEY" --new-key-file "$T/pass2" $FAST >/dev/null ||
	fail "enroll pass2"
vdkey enroll "$LOWER" --key-file "$KEY" --tpm2 --pcrs 16 >/dev/null || fail "enroll --tpm2"
vdkey enroll "$LOWER" --key-file "$KEY" --tang "$URL" --tang-thumbprint "$TP" >/dev/null ||
	fail "enroll --tang"
vdkey list "$LOWER" --json | python3 -c 'import json,sys
j = json.load(sys.stdin)
k = {s["slot"]: s["kind"] for s in j["keyslots"]}
assert k == {0: "passphrase", 1: "passphrase", 2: "tpm2", 3: "tang"}, k' || fail "slots before"
keyctl pipe "$(keyctl search @u user "$DESC")" >"$T/oldkey" || fail "read the old key"

info "data written before the rotation"
head -c 40M /dev/urandom >"$T/before.raw"
td_serve "crypt:$LOWER" "$SOCK"
nbdcopy "$T/before.raw" "$URI" || fail "nbdcopy in"

hdr_sum() { head -c 131072 "$IMG" | sha256sum; }
refused() { # refused WHAT EXPECTED-REGEX -- vdkey reencrypt args...
	local what=$1 re=$2 out before
	shift 2
	before=$(hdr_sum)
	out=$(vdkey reencrypt "$LOWER" "$@" </dev/null 2>&1) && fail "$what: started: $out"
	echo "$out" | grep -q "$re" || fail "$what: message: $out"
	[ "$(hdr_sum)" = "$before" ] || fail "$what: the header changed"
	info "refused ($what): $out"
}

tap-ctl pause -p "$TD_PID" >/dev/null || fail "pause"
info "refusals change nothing"
refused "pass2 not given" "keyslot 1.*--keep-slot 1:FILE.*--drop-slot 1" --key-file "$KEY"
printf 'not it' >"$T/wrong"
refused "wrong --keep-slot" "keyslot 1.*does not open" --key-file "$KEY" --keep-slot "1:$T/wrong"
refused "--keep-slot of a token slot with a file" "keyslot 2.*tpm2.*no passphrase" \
	--key-file "$KEY" --keep-slot "1:$T/pass2" --keep-slot "2:$T/pass2"
tang_stop tang
refused "tang down" "keyslot 3 (tang).*--drop-slot 3" --key-file "$KEY" --keep-slot "1:$T/pass2"
tang_start tang "$TANGPORT"

info "the rotation keeping every slot, online"
vdkey reencrypt "$LOWER" --key-file "$KEY" --keep-slot "1:$T/pass2" >"$T/start.txt" ||
	fail "reencrypt start: $(cat "$T/start.txt")"
grep -q "re-wrapped keyslots 0, 1, 2, 3" "$T/start.txt" || fail "start output: $(cat "$T/start.txt")"
vdkey audit "$LOWER" --json | python3 -c 'import json,sys
r = json.load(sys.stdin)["rotation"]
assert r["in_progress"] and r["rewrapped"] == [0, 1, 2, 3] and r["dropped"] == [], r' ||
	fail "audit during the pass"
keyctl pipe "$(keyctl search @u user "$DESC:next")" >"$T/newkey" || fail "read the new key"
cmp -s "$T/oldkey" "$T/newkey" && fail "the new key is the old one"
tap-ctl unpause -p "$TD_PID" --next-key >/dev/null || fail "unpause --next-key"

info "kill -9 during the pass"
for i in $(seq 1 200); do
	b=$(vdkey reencrypt "$LOWER" --status | sed -n 's/^rotating: block \([0-9]*\) .*/\1/p')
	[ -n "$b" ] && [ "$b" -gt 0 ] && break
	sleep 0.05
done
kill -9 "$TD_PID"
wait "$TD_PID" 2>/dev/null
rm -f "$SOCK"
st=$(vdkey reencrypt "$LOWER" --status)
echo "$st" | grep -q "^rotating" || fail "the pass ended before the kill: $st"
info "after the kill: $st"
vdkey audit "$LOWER" --json | python3 -c 'import json,sys
j = json.load(sys.stdin)
r = j["rotation"]
assert r["in_progress"] and r["rewrapped"] == [0, 1, 2, 3] and r["dropped"] == [], r
assert j["keyslots_active"] == 4, j["keyslots_active"]' || fail "slots after the kill"
printf 'third passphrase %s' "$RANDOM" >"$T/pass3"
out=$(vdkey enroll "$LOWER" --key-file "$KEY" --new-key-file "$T/pass3" $FAST 2>&1) &&
	fail "enrolled during the rotation: $out"
echo "$out" | grep -q "rotation is under way" || fail "enroll message: $out"
info "the second passphrase loads both keys mid-rotation (as after a host crash)"
vdkey unload "$LOWER" >/dev/null # both keys
keyctl search @u user "$DESC:next" >/dev/null 2>&1 && fail "unload left the new key"
vdkey load "$LOWER" --key-file "$T/pass2" >/dev/null || fail "load pass2 during the rotation"
keyctl pipe "$(keyctl search @u user "$DESC:next")" | cmp -s - "$T/newkey" ||
	fail "pass2 did not load the new key"
info "so does the TPM slot, through its token"
vdkey unload "$LOWER" >/dev/null
out=$(vdkey load "$LOWER" --token-only </dev/null 2>&1) || fail "load --token-only during the rotation: $out"
keyctl pipe "$(keyctl search @u user "$DESC")" | cmp -s - "$T/oldkey" ||
	fail "the TPM slot did not load the old key"
keyctl pipe "$(keyctl search @u user "$DESC:next")" | cmp -s - "$T/newkey" ||
	fail "the TPM slot did not load the new key"
td_serve "crypt:$LOWER" "$SOCK"
vdkey reencrypt "$LOWER" --wait --timeout 240 >"$T/wait.txt" || fail "wait: $(cat "$T/wait.txt")"
grep -q "complete" "$T/wait.txt" || fail "wait output: $(cat "$T/wait.txt")"
nbdcopy "$URI" "$T/after.raw" || fail "nbdcopy out"
cmp <(head -c 40M "$T/after.raw") "$T/before.raw" || fail "data changed by the rotation"
td_stop "$TD_PID" || fail "stop"

info "every slot loads the new key and reads the data"
vdkey audit "$LOWER" --json | python3 -c 'import json,sys
j = json.load(sys.stdin)
r = j["rotation"]
assert not r["in_progress"] and r["rewrapped"] == [0, 1, 2, 3] and r["dropped"] == [], r
k = {s["slot"]: s["kind"] for s in j["keyslots"]}
assert k == {0: "passphrase", 1: "passphrase", 2: "tpm2", 3: "tang"}, k' || fail "audit after"
check_load() { # check_load WHAT SLOT -- vdkey load args: SLOT must be the one that opened
	local what=$1 slot=$2 out
	shift 2
	vdkey unload "$LOWER" >/dev/null 2>&1
	out=$(vdkey load "$LOWER" "$@" </dev/null 2>&1) || fail "load with $what: $out"
	echo "$out" | grep -q "(keyslot $slot)" || fail "$what: not keyslot $slot: $out"
	keyctl pipe "$(keyctl search @u user "$DESC")" | cmp -s - "$T/newkey" ||
		fail "$what did not load the new key"
	td_serve "crypt:$LOWER" "$SOCK"
	nbdcopy "$URI" "$T/check.raw" || fail "nbdcopy ($what)"
	cmp "$T/check.raw" "$T/after.raw" || fail "data through $what"
	td_stop "$TD_PID" || fail "stop ($what)"
	info "$what: new key, data ok"
}
# load tries the token slots first: with no TPM at NOTPM and tang down, the
# passphrase has to open it
NOTPM="swtpm:host=127.0.0.1,port=$((TPMPORT + 2))"
tang_stop tang
check_load "passphrase 1" 0 --key-file "$KEY" --tpm2-device "$NOTPM"
check_load "passphrase 2" 1 --key-file "$T/pass2" --tpm2-device "$NOTPM"
check_load "the TPM" 2 --token-only
tang_start tang "$TANGPORT"
check_load "the tang server" 3 --token-only --tpm2-device "$NOTPM"

info "the old key opens nothing"
rot_old_key_refused "$T/oldkey"

info "a second rotation with tang down: refused, then --drop-slot 3"
tang_stop tang
vdkey load "$LOWER" --key-file "$KEY" >/dev/null || fail "load"
refused "tang down again" "keyslot 3 (tang)" --key-file "$KEY" --keep-slot "1:$T/pass2"
vdkey reencrypt "$LOWER" --key-file "$KEY" --keep-slot "1:$T/pass2" --drop-slot 3 \
	>"$T/start2.txt" || fail "start with --drop-slot 3: $(cat "$T/start2.txt")"
grep -q "dropped at the end: keyslot 3" "$T/start2.txt" || fail "start2: $(cat "$T/start2.txt")"
td_serve "crypt:$LOWER" "$SOCK"
vdkey reencrypt "$LOWER" --wait --timeout 240 >/dev/null || fail "wait 2"
td_stop "$TD_PID" || fail "stop 2"
vdkey audit "$LOWER" --json | python3 -c 'import json,sys
j = json.load(sys.stdin)
r = j["rotation"]
assert r["rewrapped"] == [0, 1, 2] and r["dropped"] == [3], r
k = {s["slot"]: s["kind"] for s in j["keyslots"]}
assert k == {0: "passphrase", 1: "passphrase", 2: "tpm2"}, k' || fail "audit after the drop"
vdkey log "$LOWER" --json >"$T/log.json" || fail "log"
python3 - "$T/log.json" <<'PY' || { vdkey log "$LOWER"; fail "rewrap/drop entries in the key-event log"; }
import json, sys
e = [x for x in json.load(open(sys.argv[1])) if x["outcome"] == "ok"]
rw = [x["slot"] for x in e if x["op"] == "reencrypt-rewrap"]
dr = [x["slot"] for x in e if x["op"] == "reencrypt-drop"]
assert rw == [0, 1, 2, 3, 0, 1, 2] and dr == [3], (rw, dr)
PY
# --wait made the new key the keyring's
keyctl pipe "$(keyctl search @u user "$DESC")" >"$T/newkey2" || fail "read the second new key"
cmp -s "$T/newkey" "$T/newkey2" && fail "the second rotation kept the key"
mv "$T/newkey2" "$T/newkey"
check_load "the TPM after the second rotation" 2 --token-only
check_load "passphrase 2 after the second rotation" 1 --key-file "$T/pass2" --tpm2-device "$NOTPM"
tang_start tang "$TANGPORT"
out=$(vdkey load "$LOWER" --token-only --tpm2-device "$NOTPM" </dev/null 2>&1) &&
	fail "loaded without the TPM after the tang slot was dropped: $out"
echo "PASS"
