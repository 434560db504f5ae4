#!/bin/bash
# The key-event log (docs/FORMAT.md "Key-event log"): format, enroll,
# remove, load, unload and a failed unlock are recorded in order with
# their outcomes; a clean log verifies; editing, deleting, reordering an
# entry, cutting the tail, deleting the log or rewriting the whole chain
# is reported by 'vdkey log --verify' naming the entry; a clean copy
# verifies again; audit --json reports it.
. "$TD_SRC/tests/lib/common.sh"
need python3 keyctl
export TDCRYPT_STATE_DIR=$T/state
IMG=$T/disk.img
K1=$T/k1; K2=$T/k2; BAD=$T/bad
printf 'first passphrase' >"$K1"; printf 'second passphrase' >"$K2"; printf 'wrong' >"$BAD"
FAST="--pbkdf pbkdf2 --pbkdf-iterations 1000"
truncate -s 16M "$IMG"
td_on_exit "vdkey unload aio:$IMG >/dev/null 2>&1"

vdkey log --help | grep -q -- "--verify" || fail "log --help"
vdkey --help | grep -q "log SPEC" || fail "vdkey --help lists log"

info "events: format, enroll, failed load, load, unload, remove, failed unload"
vdkey format "aio:$IMG" --key-file "$K1" $FAST >/dev/null || fail "format"
UUID=$(vdkey list "aio:$IMG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
LOG=$TDCRYPT_STATE_DIR/$UUID/keylog
[ -f "$LOG" ] || fail "no log at $LOG"
vdkey enroll "aio:$IMG" --key-file "$K1" --new-key-file "$K2" $FAST >/dev/null || fail "enroll"
vdkey load "aio:$IMG" --key-file "$BAD" >/dev/null 2>&1 && fail "wrong passphrase accepted"
vdkey load "aio:$IMG" --key-file "$K2" >/dev/null || fail "load"
vdkey unload "aio:$IMG" >/dev/null || fail "unload"
vdkey remove "aio:$IMG" --key-file "$K2" --slot 0 >/dev/null || fail "remove"
vdkey unload "aio:$IMG" >/dev/null 2>&1 && fail "unload without a key succeeded"

vdkey log "aio:$IMG" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
got = [(e["seq"], e["op"], e["slot"], e["outcome"], e["anchored"]) for e in j]
want = [(0, "format", 0, "ok", True), (1, "enroll", 1, "ok", True), (2, "load", None, "fail", True),
        (3, "load", 1, "ok", True), (4, "unload", None, "ok", True), (5, "remove", 0, "ok", True),
        (6, "unload", None, "fail", False)]
assert got == want, got
for i, e in enumerate(j):
    assert e["uid"] == '"$(id -u)"' and e["time"] > 1500000000, e
    assert i == 0 or e["prev"] == j[i - 1]["hash"], e
' || fail "log --json entries"
vdkey log "aio:$IMG" | grep -q "remove" || fail "log table"

info "a clean log verifies (key from the passphrase, then from the keyring)"
out=$(vdkey log "aio:$IMG" --verify --key-file "$K2" 2>&1) || fail "clean log: $out"
echo "$out" | grep -q "7 entries, 6 anchored.*1 unanchored" || fail "verify message: $out"
vdkey log "aio:$IMG" --verify --key-file "$BAD" >/dev/null 2>&1 && fail "verify with a wrong passphrase"
vdkey load "aio:$IMG" --key-file "$K2" --once >/dev/null || fail "load --once"
out=$(vdkey log "aio:$IMG" --verify </dev/null 2>&1) || fail "verify with the keyring key: $out"
echo "$out" | grep -q "8 entries, 8 anchored" || fail "the load anchored the failed unload: $out"
keyctl search @u user "$(key_desc "aio:$IMG")" >/dev/null || fail "verify consumed a --once key"
vdkey log "aio:$IMG" --verify --json </dev/null | python3 -c '
import json,sys; j=json.load(sys.stdin); assert j["verified"] and j["entries"] == 8 and j["error"] is None, j' ||
	fail "verify --json"

info "audit --json reports the log"
vdkey audit "aio:$IMG" --json | python3 -c '
import json,sys; k=json.load(sys.stdin)["keylog"]
assert k["entries"] == 8 and k["anchored"] == 8 and k["verified"] and k["anchor_authenticated"], k' ||
	fail "audit keylog (key loaded)"
vdkey unload "aio:$IMG" >/dev/null || fail "unload"
vdkey audit "aio:$IMG" --json | python3 -c '
import json,sys; k=json.load(sys.stdin)["keylog"]
assert k["entries"] == 9 and not k["verified"] and not k["anchor_authenticated"] and "not authenticated" in k["error"], k' ||
	fail "audit keylog (no key)"
cp "$LOG" "$T/clean"

# verify_fails WHAT PATTERN: --verify must fail and name the problem
verify_fails() {
	out=$(vdkey log "aio:$IMG" --verify --key-file "$K2" 2>&1) && fail "$1 not detected"
	echo "$out" | grep -q "$2" || fail "$1: unexpected message: $out"
	echo "   $1: $(echo "$out" | tail -n1)"
	cp "$T/clean" "$LOG"
}
edit() { python3 - "$LOG" "$@"; }

info "tampering is reported"
edit 3 <<'EOF'
import sys
p, n = sys.argv[1], int(sys.argv[2])
l = open(p).read().split("\n")
l[n] = l[n].replace(" uid=", " uid=4", 1)
open(p, "w").write("\n".join(l))
EOF
verify_fails "edited uid" "hash mismatch at seq 3"
sed -i '2s/outcome=ok/outcome=fail/' "$LOG"
verify_fails "edited outcome" "hash mismatch at seq 1"
sed -i '4d' "$LOG"
verify_fails "deleted entry" "entry removed or reordered at seq 3"
edit <<'EOF'
import sys
p = sys.argv[1]
l = open(p).read().split("\n")
l[4], l[5] = l[5], l[4]
open(p, "w").write("\n".join(l))
EOF
verify_fails "swapped entries" "entry removed or reordered at seq 4"
sed -i '$d' "$LOG"
verify_fails "cut tail" "anchor points past the end of the log"
truncate -s -10 "$LOG"
verify_fails "torn last line" "not terminated"
rm "$LOG"
verify_fails "deleted log" "anchor points past the end of the log: the header anchors 9 entries, the log has 0"

info "a rewritten chain (every hash recomputed) fails at the anchor"
edit <<'EOF'
import hashlib, sys
p = sys.argv[1]
lines = open(p).read().split("\n")[:-1]
uuid = bytes.fromhex(lines[0].split(" uuid=")[1].split(" ")[0].replace("-", ""))
prev = hashlib.sha256(b"tdcrypt v1 keylog genesis\n" + uuid).hexdigest()
out = []
for i, l in enumerate(lines):
    body = l.split(" hash=")[0].split(" prev=")[0]
    if i == 2:
        body = body.replace("outcome=fail", "outcome=ok")   # hide the failed attempt
    body += " prev=" + prev
    h = hashlib.sha256(b"tdcrypt v1 keylog entry\n" + body.encode()).hexdigest()
    out.append(body + " hash=" + h)
    prev = h
open(p, "w").write("\n".join(out) + "\n")
EOF
verify_fails "rewritten chain" "head hash mismatch at the anchored entry seq 8"

info "the clean copy verifies again"
vdkey log "aio:$IMG" --verify --key-file "$K2" >/dev/null || fail "clean copy"

info "a tampered log is never extended (no laundering by a new anchor)"
sed -i '$d' "$LOG"
out=$(vdkey load "aio:$IMG" --key-file "$K2" 2>&1) || fail "load must still work: $out"
echo "$out" | grep -q "fails verification" || fail "no warning: $out"
vdkey log "aio:$IMG" --verify --key-file "$K2" >/dev/null 2>&1 && fail "tampering laundered"
vdkey unload "aio:$IMG" >/dev/null 2>&1
cp "$T/clean" "$LOG"

info "load of an image a tapdisk holds: recorded, unanchored, the load works"
vdkey load "aio:$IMG" --key-file "$K2" >/dev/null || fail "load"
td_serve "crypt:aio:$IMG" "$T/nbd.sock"
if [ -S "$T/nbd.sock" ]; then
	out=$(vdkey load "aio:$IMG" --key-file "$K2" 2>&1) || fail "load of a served image: $out"
	echo "$out" | grep -q "not anchored" || fail "no note: $out"
	td_stop "$TD_PID" || true
	out=$(vdkey log "aio:$IMG" --verify --key-file "$K2" 2>&1) || fail "after locked load: $out"
	echo "$out" | grep -q "unanchored" || fail "locked load entry: $out"
fi

info "reset: the way out of a broken log, needs the key, keeps the old file"
vdkey unload "aio:$IMG" >/dev/null 2>&1
vdkey log "aio:$IMG" --help | grep -q -- "--reset" || fail "log --help lists --reset"
anchored=$(vdkey log "aio:$IMG" --verify --json --key-file "$K2" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["anchored"])')
rm "$LOG"
out=$(vdkey log "aio:$IMG" --verify --key-file "$K2" 2>&1) && fail "deleted log verifies"
echo "$out" | grep -q "anchor points past the end" || fail "deleted log: $out"
echo 'not the key' >"$T/wrongkey"
vdkey log "aio:$IMG" --reset --key-file "$T/wrongkey" >/dev/null 2>&1 && fail "reset without the key"
[ ! -e "$LOG" ] || fail "a refused reset wrote a log"
vdkey log "aio:$IMG" --reset --verify >/dev/null 2>&1; [ $? = 2 ] || fail "--reset --verify is usage"
out=$(vdkey log "aio:$IMG" --reset --key-file "$K2" 2>&1) || fail "reset: $out"
echo "   $out"
echo "$out" | grep -q "reset at seq $anchored" || fail "reset message: $out"
js=$(vdkey log "aio:$IMG" --verify --json --key-file "$K2") || fail "the reset log does not verify: $js"
echo "$js" | python3 -c '
import json, sys
j = json.load(sys.stdin); n = int(sys.argv[1])
assert j["verified"] and j["reset_at"] == n and j["entries"] == n + 1 and j["anchored"] == n + 1, j' \
	"$anchored" || fail "reset log: $js"
head -1 "$LOG" | grep -q "^seq=$anchored .* op=reset slot=- outcome=ok " || fail "reset entry: $(head -1 "$LOG")"
# events after the reset chain on and verify
vdkey load "aio:$IMG" --key-file "$K2" >/dev/null || fail "load after reset"
vdkey unload "aio:$IMG" >/dev/null
vdkey log "aio:$IMG" --verify --key-file "$K2" >/dev/null || fail "events after the reset"
# a reset of a log that still exists keeps it
vdkey log "aio:$IMG" --reset --key-file "$K2" >/dev/null || fail "second reset"
[ "$(ls "$(dirname "$LOG")" | grep -c '^keylog.before-reset\.')" = 1 ] ||
	fail "the old log was not kept: $(ls "$(dirname "$LOG")")"
vdkey load "aio:$IMG" --key-file "$K2" >/dev/null || fail "load for the audit"
vdkey audit "aio:$IMG" --json | python3 -c '
import json, sys
k = json.load(sys.stdin)["keylog"]
assert k["verified"] and k["reset_at"] is not None, k' || fail "audit after reset"
vdkey unload "aio:$IMG" >/dev/null

info "a reset forged without the key (header untouched) fails verification"
cp "$LOG" "$T/good-reset"
# the most plausible forgery: a reset continuing exactly from the header's
# anchor (readable by anyone), hiding everything before it
read -r acount ahead < <(vdkey log "aio:$IMG" --verify --json --key-file "$K2" |
	python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["anchored"], j["head"])')
edit "$acount" "$ahead" <<'EOF'
import hashlib, sys
p, n, head = sys.argv[1], int(sys.argv[2]), sys.argv[3]
first = open(p).read().split("\n")[0]
rest = first.split(" time=", 1)[1].split(" prev=")[0]
body = "seq=%d time=%s prev=%s" % (n, rest, head)
h = hashlib.sha256(b"tdcrypt v1 keylog entry\n" + body.encode()).hexdigest()
open(p, "w").write(body + " hash=" + h + "\n")
EOF
head -1 "$LOG" | grep -q "^seq=$acount .* op=reset " || fail "forgery: $(cat "$LOG")"
verify_fails "forged reset" "reset at seq $acount but the reset is not anchored"
cp "$T/good-reset" "$LOG"
vdkey log "aio:$IMG" --verify --key-file "$K2" >/dev/null || fail "the real reset log"
echo ok
