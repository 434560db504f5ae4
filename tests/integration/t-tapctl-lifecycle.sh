#!/bin/bash
# tap-ctl lifecycle: create -> list -> pause (a write issued while paused
# waits, then completes after unpause) -> destroy; a second create on the
# same image is refused naming the lock holder; after kill -9, create works.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io python3
IMG=$T/disk.img
truncate -s 32M "$IMG"

info "create prints exactly one line, the URI"
out=$(tap-ctl create -a "tap:aio:$IMG")
[ "$(echo "$out" | wc -l)" = 1 ] || fail "create printed: $out"
[[ "$out" == nbd+unix:///\?socket=* ]] || fail "not a URI: $out"
URI=$out
SOCK=${URI#nbd+unix:///?socket=}
[ -S "$SOCK" ] || fail "no socket at $SOCK"

info "list shows it, as text and JSON"
tap-ctl list | grep -q "aio:$IMG" || fail "list: $(tap-ctl list)"
read -r PID MINOR STATE < <(tap-ctl list --json | python3 -c '
import json,sys
l=json.load(sys.stdin); assert len(l)==1, l
e=l[0]; print(e["pid"], e["minor"], e["state"])')
[ "$STATE" = running ] || fail "state $STATE"
kill -0 "$PID" || fail "pid $PID not alive"
[ "$(stat -c %a "$TAPDISK_RUNDIR/tapdisk.$MINOR.ctl")" = 600 ] || fail "control socket mode"

qemu-io -f raw -c "write -P 0x71 0 64k" "$URI" >/dev/null || fail "write"

info "pause: drains, releases the image lock; a new write waits"
tap-ctl pause -p "$PID" -m "$MINOR" || fail "pause"
tap-ctl list --json | grep -q '"state": "paused"' || fail "not paused: $(tap-ctl list)"
python3 - "$IMG" <<'PY' || fail "image still locked while paused"
import fcntl, sys
f = open(sys.argv[1], "r+b")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
fcntl.lockf(f, fcntl.LOCK_UN)
PY
cmp <(head -c 65536 "$IMG") <(head -c 65536 /dev/zero | tr '\0' '\161') || fail "data not durable at pause"
qemu-io -f raw -c "write -P 0x72 64k 4k" "$URI" >/dev/null 2>&1 &
W=$!
sleep 1.5
kill -0 $W 2>/dev/null || fail "write completed while paused"
info "unpause: the waiting write completes"
tap-ctl unpause -m "$MINOR" || fail "unpause"
wait $W || fail "write issued during pause failed"
qemu-io -f raw -c "read -P 0x72 64k 4k" "$URI" | grep -q "read 4096" || fail "read back"
tap-ctl stats -m "$MINOR" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["writes"]>=2, s' ||
	fail "stats json"

info "a second create on the same image is refused, naming the holder"
out=$(tap-ctl create -a "aio:$IMG" 2>&1) && fail "second create succeeded: $out"
echo "$out" | grep -q "locked" || fail "message does not say locked: $out"
echo "$out" | grep -q "pid $PID" || fail "message does not name the holder: $out"

info "after kill -9, create works again and the stale entry is gone"
kill -9 "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done
URI2=$(tap-ctl create -a "aio:$IMG") || fail "create after kill -9"
n=$(tap-ctl list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 1 ] || fail "list has $n entries"
qemu-io -f raw -c "read -P 0x72 64k 4k" "$URI2" | grep -q "read 4096" || fail "data after restart"

info "destroy flushes and stops it"
PID2=$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
tap-ctl destroy -s "${URI2#nbd+unix:///?socket=}" || fail "destroy"
# gone, or a zombie waiting for init to reap it
state=$(awk '{print $3}' "/proc/$PID2/stat" 2>/dev/null)
[ -z "$state" ] || [ "$state" = Z ] || fail "still running (state $state)"
[ "$(tap-ctl list --json)" = "[]" ] || fail "list not empty"

info "errors: missing image, bad spec, unknown selector"
out=$(tap-ctl create -a "aio:$T/nope.img" 2>&1) && fail "missing image accepted"
echo "$out" | grep -q "does not exist" || fail "message: $out"
out=$(tap-ctl create -a "bogus:$IMG" 2>&1) && fail "bad spec accepted"
echo "$out" | grep -q "unknown driver 'bogus'" || fail "message: $out"
truncate -s 1000 "$T/odd.img"
out=$(tap-ctl create -a "aio:$T/odd.img" 2>&1) && fail "odd size accepted"
echo "$out" | grep -q "not a multiple of 4096" || fail "message: $out"
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
	# a user who may not write the image gets a clear refusal
	truncate -s 4M "$T/root-only.img"; chmod 0600 "$T/root-only.img"; chmod 0755 "$T"
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$TD_BIN/tapdisk" serve \
		"aio:$T/root-only.img" --socket "$T/nobody.sock" 2>&1) && fail "opened without permission"
	echo "$out" | grep -q "permission denied opening image" || fail "message: $out"
fi
out=$(tap-ctl pause -m 999 2>&1) && fail "pause of nothing succeeded"
echo "$out" | grep -q "no running tapdisk" || fail "message: $out"
tap-ctl --help | grep -q create || fail "help"
echo ok
