#!/bin/bash
# The integrity layer's tuning options, which crypt passes on to the layer
# it inserts (crypt,journal-partial=N,tag-cache=SIZE:...; issue 16: they
# were environment variables). Bad values and unknown options are refused
# with a message naming them; valid ones open and serve the same data; a
# small tag cache takes effect: its dirty pages fill half of it sooner, so
# writes spread over many tag pages cost more checkpoints (generations).
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl python3
crypt_aio_disk 200M 'options test'
generation() {
	vdkey audit "aio:$IMG" --json | python3 -c '
import json, sys; print(json.load(sys.stdin)["freshness"]["generation"])'
}

refused() { # SPEC TEXT -- the open fails, naming TEXT
	timeout 30 tapdisk serve "$1" --socket "$T/bad.sock" >"$T/bad.out" 2>&1 &&
		fail "$1 was accepted"
	grep -qF -- "$2" "$T/bad.out" || fail "$1: no message naming '$2': $(tail -n 2 "$T/bad.out")"
}
info "bad values and unknown options are refused"
refused "crypt,journal-partial=0:aio:$IMG" "journal-partial=1..4"
refused "crypt,journal-partial=5:aio:$IMG" "bad option 'journal-partial=5'"
refused "crypt,journal-partial=2k:aio:$IMG" "bad option 'journal-partial=2k'"
refused "crypt,tag-cache=512K:aio:$IMG" "tag-cache=1M..4G"
refused "crypt,tag-cache=8G:aio:$IMG" "bad option 'tag-cache=8G'"
refused "crypt,tag-cache=64Q:aio:$IMG" "bad option 'tag-cache=64Q'"
refused "crypt,tag-cache=:aio:$IMG" "bad option 'tag-cache='"
refused "crypt,cache=1M:aio:$IMG" "unknown option 'cache=1M'"
[ "$(generation)" = 0 ] || fail "a refused open changed the image"

# one 4 KiB write every 512 KiB: every write dirties another tag page
writes() { # PATTERN
	local cmds=() i
	for i in $(seq 0 299); do cmds+=(-c "write -P $1 $((i * 512))k 4k"); done
	qemu-io -f raw "${cmds[@]}" "$URI" >"$T/qemu-io.out" || fail "qemu-io: $(tail -n 3 "$T/qemu-io.out")"
	grep -qi "fail" "$T/qemu-io.out" && fail "a write failed: $(grep -i fail "$T/qemu-io.out" | head -n 3)"
}
readback() { # PATTERN
	qemu-io -f raw -c "read -P $1 0 4k" -c "read -P $1 149504k 4k" -c "read -P 0 4k 508k" \
		"$URI" | grep -qi fail && fail "read back $1"
}

info "defaults: 300 writes over 300 tag pages, one checkpoint (at the stop)"
g0=$(generation)
td_serve "crypt:aio:$IMG" "$SOCK"
writes 0x31
readback 0x31
td_stop "$TD_PID" || fail "stop"
g1=$(generation)
[ $((g1 - g0)) = 1 ] || fail "defaults: generation $g0 -> $g1, expected one checkpoint"

info "journal-partial=4,tag-cache=1M: checkpoints when 128 pages are dirty"
td_serve "crypt,journal-partial=4,tag-cache=1M:aio:$IMG" "$SOCK"
writes 0x32
readback 0x32
td_stop "$TD_PID" || fail "stop"
g2=$(generation)
[ $((g2 - g1)) -ge 3 ] || fail "tag-cache=1M: generation $g1 -> $g2, expected at least 3 checkpoints"
grep -q "replaying" "$TAPDISK_RUNDIR/tapdisk.log" && fail "a clean stop left journal records"

info "the data is intact with the defaults again"
td_serve "crypt:aio:$IMG" "$SOCK"
readback 0x32
td_stop "$TD_PID" || fail "stop"
echo "ok: bad options refused; checkpoints $((g1 - g0)) with the defaults, $((g2 - g1)) with tag-cache=1M"
