#!/bin/bash
# Single-block replay (issue 9, "Must show" 1): write A to block 0, then B
# to block 0 and C to a block far away (another tree page); put back only
# the bytes the A->B step changed, keeping every byte the C write changed
# too. Reading block 0 must fail with EIO, or the open must be refused
# with an integrity message — never return A. Variants: everything the
# A->B step changed; the old (data, tag page) pair; the tag page alone; the
# tree page alone; and, with the image captured after a kill -9 (the
# records still live in the journal), the data and journal records alone.
# tests/lib/replayforge.py builds each forgery from three copies.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl python3
FAR=$((150 * 1024 * 1024)) # byte offset of C: another L1 tree page (64 MiB each)
crypt_aio_disk 200M 'replay test'
LAYOUT=$(vdkey audit "aio:$IMG" --json | python3 -c '
import json, sys; print(json.dumps(json.load(sys.stdin)["integrity_layout"]))') ||
	fail "no integrity_layout"
python3 -c 'import json,sys; l=json.loads(sys.argv[1]); assert l["tree_pages"] > 0' "$LAYOUT" ||
	fail "not a version 2 layout"

write() { # PATTERN OFFSET
	qemu-io -f raw -c "write -P $1 $2 4k" "$URI" 2>&1 | grep -q "wrote 4096/4096" ||
		fail "write $1 at $2"
}

info "A to block 0, close; B to block 0, close; C far away, close"
td_serve "crypt:aio:$IMG" "$SOCK"
write 0x41 0
td_stop "$TD_PID" || fail "stop A"
cp --sparse=always "$IMG" "$T/sa.img"
td_serve "crypt:aio:$IMG" "$SOCK"
write 0x42 0
td_stop "$TD_PID" || fail "stop B"
cp --sparse=always "$IMG" "$T/sab.img"
td_serve "crypt:aio:$IMG" "$SOCK"
write 0x43 $FAR
td_stop "$TD_PID" || fail "stop C"
cp --sparse=always "$IMG" "$T/sabc.img"

# expect_replay_caught NAME: serve the forged image; block 0 must be EIO
# or the open refused naming integrity; C must still read back where the
# open succeeds and C's bytes were kept
expect_replay_caught() {
	local name=$1 out log=$TAPDISK_RUNDIR/tapdisk.log from
	from=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
	tapdisk serve "crypt:aio:$IMG" --socket "$SOCK" 2>>"$log" &
	TD_PID=$!
	_td_pids="$_td_pids $TD_PID"
	for _ in $(seq 1 100); do
		[ -S "$SOCK" ] && break
		kill -0 "$TD_PID" 2>/dev/null || break
		sleep 0.05
	done
	if ! [ -S "$SOCK" ]; then
		wait "$TD_PID" 2>/dev/null
		tail -c +"$from" "$log" | grep -qiE "integrity|tamper|freshness" ||
			fail "$name: open refused, but not with an integrity message"
		info "$name: open refused: $(tail -c +"$from" "$log" | grep -iE 'error' | tail -1)"
		return
	fi
	out=$(qemu-io -f raw -c "read -P 0x41 0 4k" "$URI" 2>&1)
	grep -q "read 4096/4096" <<<"$out" && ! grep -qi "fail\|mismatch" <<<"$out" &&
		fail "$name: block 0 was replayed: the old contents A were returned"
	out=$(qemu-io -f raw -c "read 0 4k" "$URI" 2>&1)
	grep -q "Input/output error" <<<"$out" || fail "$name: block 0 did not fail with EIO: $out"
	info "$name: block 0 -> EIO"
	td_stop "$TD_PID" || true
	rm -f "$SOCK"
}

forge() { # KIND [SA SAB SABC]
	cp --sparse=always "${4:-$T/sabc.img}" "$IMG"
	rm -f "$TDCRYPT_STATE_DIR"/*/generation # the forgery is not a rollback of the generation
	python3 "$TD_SRC/tests/lib/replayforge.py" "${2:-$T/sa.img}" "${3:-$T/sab.img}" \
		"${4:-$T/sabc.img}" "$IMG" "$LAYOUT" "$1" || fail "forge $1 restored nothing"
}

info "control: the unforged image reads B at block 0 and C far away"
cp --sparse=always "$T/sabc.img" "$IMG"
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "read -P 0x42 0 4k" -c "read -P 0x43 $FAR 4k" "$URI" 2>&1 |
	grep -qi "fail\|mismatch" && fail "control image does not read B and C"
td_stop "$TD_PID" || fail "stop control"

for kind in all data+tag tag tree; do
	forge $kind
	expect_replay_caught "replayed ($kind)"
done

info "the same with the records still in the journal (kill -9, no checkpoint)"
cp --sparse=always "$T/sa.img" "$IMG"
rm -f "$TDCRYPT_STATE_DIR"/*/generation
td_serve "crypt:aio:$IMG" "$SOCK"
write 0x42 0
cp --sparse=always "$IMG" "$T/jsab.img" # B acknowledged: record and data on disk
write 0x43 $FAR
kill -9 "$TD_PID"
wait "$TD_PID" 2>/dev/null
rm -f "$SOCK"
cp --sparse=always "$IMG" "$T/jsabc.img"
for kind in journal all; do
	forge $kind "$T/sa.img" "$T/jsab.img" "$T/jsabc.img"
	expect_replay_caught "replayed from the journal ($kind)"
done

info "control: the killed image itself recovers B and C"
cp --sparse=always "$T/jsabc.img" "$IMG"
rm -f "$TDCRYPT_STATE_DIR"/*/generation
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "read -P 0x42 0 4k" -c "read -P 0x43 $FAR 4k" "$URI" 2>&1 |
	grep -qi "fail\|mismatch" && fail "the killed image does not recover B and C"
td_stop "$TD_PID" || fail "stop"
echo ok
