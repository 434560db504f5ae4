#!/bin/bash
# vdkey audit --scrub (issue 4, "Must show" 5): on a clean image it reports
# zero failures and the exact numbers of verified and unwritten blocks
# (zeroed and discarded blocks count as unwritten); after tampering it lists
# exactly the tampered blocks and exits 1; it refuses clearly without the key,
# while a tapdisk holds the image, and on an image without integrity; after
# a kill -9 it replays the journal first and still finds everything.
# The image uses the version 1 layout, where a changed table entry reaches
# the per-block check and the list names single blocks; on version 2 the
# freshness tree fails the whole tag page first (t-integrity-replay.sh).
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl python3
crypt_aio_disk 33M scrub --integrity-version 1

# scrub_json -> "TOTAL VERIFIED UNWRITTEN FAILED [BLOCKS,...] TRUNCATED DATA_START TAGS_OFF"
scrub_json() {
	vdkey audit "aio:$IMG" --scrub --json 2>"$T/scrub.err" >"$T/scrub.json"
	echo $? >"$T/scrub.rc"
	python3 - "$T/scrub.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s, l = d["scrub"], d["integrity_layout"]
assert s["blocks_total"] == l["data_blocks"], (s, l)
assert s["verified"] + s["unwritten"] + s["failed"] == s["blocks_total"], s
print(s["blocks_total"], s["verified"], s["unwritten"], s["failed"],
      ",".join(map(str, s["failed_blocks"])) or "-",
      str(s["failed_blocks_truncated"]).lower(), l["data_start"], l["tags_off"])
PY
}

info "write 16 + 1 + 64 blocks, zero 2 of them, discard 1; stop cleanly"
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -P 0x11 0 64k" -c "write -P 0x22 400k 4k" -c "write -P 0x33 4000k 256k" \
	-c "write -z 8k 8k" -c "discard 4000k 4k" "$URI" >/dev/null || fail "writes"
info "while the image is served, scrub refuses (image locked)"
out=$(vdkey audit "aio:$IMG" --scrub 2>&1) && fail "scrubbed an image in use"
echo "$out" | grep -q "locked by another process" || fail "message: $out"
td_stop "$TD_PID" || fail "exit"

info "clean image: zero failures, the right counts"
read -r total verified unwritten failed list trunc DS TAGS < <(scrub_json) || fail "scrub json"
[ "$(cat "$T/scrub.rc")" = 0 ] || fail "scrub of a clean image exited $(cat "$T/scrub.rc")"
written=$((16 + 1 + 64 - 2 - 1))
[ "$verified" = $written ] || fail "verified $verified, expected $written"
[ "$unwritten" = $((total - written)) ] || fail "unwritten $unwritten, expected $((total - written))"
[ "$failed" = 0 ] && [ "$list" = - ] && [ "$trunc" = false ] || fail "failures on a clean image"
echo "clean: $total blocks, $verified verified, $unwritten unwritten"

info "one flipped ciphertext byte in block 1003: exactly that block is listed"
printf '\xa5' | dd of="$IMG" bs=1 seek=$((DS + 1003 * 4096 + 777)) conv=notrunc status=none
read -r total verified unwritten failed list trunc _ _ < <(scrub_json)
[ "$(cat "$T/scrub.rc")" = 1 ] || fail "scrub with a failure exited $(cat "$T/scrub.rc")"
[ "$failed" = 1 ] && [ "$list" = 1003 ] || fail "failed=$failed list=$list, expected 1003"
[ "$verified" = $((written - 1)) ] || fail "verified $verified"

info "and a flipped tag byte of block 100: both are listed, in order"
printf '\x5a' | dd of="$IMG" bs=1 seek=$((TAGS + 100 * 32 + 20)) conv=notrunc status=none
read -r total verified unwritten failed list trunc _ _ < <(scrub_json)
[ "$failed" = 2 ] && [ "$list" = 100,1003 ] || fail "failed=$failed list=$list"
out=$(vdkey audit "aio:$IMG" --scrub 2>/dev/null) && fail "text scrub exited 0 with failures"
echo "$out" | grep -q "Scrub: .* 2 FAILED" || fail "text report: $out"
echo "$out" | grep -q "^Failed: *100 1003$" || fail "text list: $out"

info "a tapdisk refuses the same blocks and serves the rest"
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "read 4012k 4k" "$URI" 2>&1 | grep -q "Input/output error" || fail "1003 readable"
qemu-io -f raw -c "read -P 0x33 4004k 8k" "$URI" | grep -qi fail && fail "neighbours of 1003"
qemu-io -f raw -c "write -P 0x44 4012k 4k" -c "write -P 0x44 400k 4k" "$URI" >/dev/null ||
	fail "rewrite"
td_stop "$TD_PID" || fail "exit"
read -r total verified unwritten failed list trunc _ _ < <(scrub_json)
[ "$failed" = 0 ] && [ "$(cat "$T/scrub.rc")" = 0 ] || fail "rewritten blocks still fail: $list"

info "after kill -9 the scrub replays the journal first"
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -P 0x55 8M 1M" "$URI" >/dev/null || fail "write"
kill -9 "$TD_PID"
wait "$TD_PID" 2>/dev/null
read -r total verified unwritten failed list trunc _ _ < <(scrub_json)
[ "$failed" = 0 ] && [ "$verified" = $((written + 256)) ] ||
	fail "after kill -9: verified=$verified failed=$failed ($(cat "$T/scrub.err"))"

info "after kill -9 with only a zeroing in the journal (no write records)"
rm -f "$SOCK" # left behind by the killed tapdisk
td_serve "crypt:aio:$IMG" "$SOCK"
qemu-io -f raw -c "write -z 8M 64k" "$URI" >/dev/null || fail "write-zeroes"
kill -9 "$TD_PID"
wait "$TD_PID" 2>/dev/null
read -r total verified unwritten failed list trunc _ _ < <(scrub_json)
[ "$failed" = 0 ] && [ "$verified" = $((written + 256 - 16)) ] ||
	fail "after a zeroing and kill -9: verified=$verified failed=$failed ($(cat "$T/scrub.err"))"

info "refusals: no key; an image without integrity"
vdkey unload "aio:$IMG" >/dev/null || fail "unload"
out=$(vdkey audit "aio:$IMG" --scrub 2>&1) && fail "scrubbed without the key"
echo "$out" | grep -q "no key loaded" || fail "message: $out"
truncate -s 9M "$T/plain.img"
crypt_image "aio:$T/plain.img" "$KEY" --integrity none
out=$(vdkey audit "aio:$T/plain.img" --scrub 2>&1) && fail "scrubbed an image without MACs"
echo "$out" | grep -q "no integrity metadata" || fail "message: $out"
echo ok
