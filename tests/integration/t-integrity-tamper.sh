#!/bin/bash
# Tamper matrix (issue 4, "Must show" 1): bytes of a crypt:aio image are
# changed outside our software while no tapdisk runs; then a fresh tapdisk
# and a real NBD client (qemu-io) read every block of a small window:
#   - one flipped ciphertext byte            -> that block EIO, neighbours fine
#   - one flipped byte of its tag / its seq  -> EIO
#   - two ciphertext blocks swapped, without and with their table entries
#                                            -> both EIO
#   - a block and its entry copied from another image (same size and
#     passphrase, other volume key and uuid) -> EIO
# Each failure is counted in tap-ctl stats (integrity_failures), logged with
# its block number, and the rest of the disk keeps working; rewriting the
# block heals it. Offsets come from 'vdkey audit --json' (integrity_layout).
#
# The images use the version 1 layout (no freshness tree): there a changed
# table entry reaches the per-block MAC check, which is what this matrix
# tests. With version 2 the freshness tree refuses the whole tag page
# first; t-integrity-replay.sh covers that. Restoring the pristine copy
# after each case is a rollback by design, so the trusted generations are
# reset with it.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl python3
A=$T/a.img
B=$T/b.img
KEY=$T/pass
SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")
FIRST=8 LAST=15 # the window of blocks written and checked
truncate -s 33M "$A" "$B"
printf 'tamper test passphrase %s' "$RANDOM" >"$KEY"
for img in "$A" "$B"; do
	vdkey format "aio:$img" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 \
		--integrity-version 1 >/dev/null || fail "format $img"
	td_on_exit "vdkey unload aio:$img >/dev/null 2>&1"
	vdkey load "aio:$img" --key-file "$KEY" >/dev/null || fail "load $img"
done

layout() { # IMG -> "DATA_START TAGS_OFF ENTRY_SIZE TAG_OFF"
	vdkey audit "aio:$1" --json | python3 -c '
import json, sys
l = json.load(sys.stdin)["integrity_layout"]
print(l["data_start"], l["tags_off"], l["tag_entry_size"], l["tag_offset_in_entry"])'
}
read -r DS TAGS ES TO < <(layout "$A") || fail "no integrity_layout in vdkey audit --json"
read -r DS_B TAGS_B _ _ < <(layout "$B")
[ "$DS" = "$DS_B" ] && [ "$TAGS" = "$TAGS_B" ] || fail "same-size images with different layouts"
uuid_a=$(vdkey list "aio:$A" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
uuid_b=$(vdkey list "aio:$B" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
[ "$uuid_a" != "$uuid_b" ] || fail "two formats gave one uuid"

pat() { printf '0x%x' $((0x40 + $1)); } # block k of image A holds bytes 0x40+k

info "write a pattern per block, stop cleanly (the final checkpoint writes the tag table)"
td_serve "crypt:aio:$A" "$SOCK"
cmds=()
for k in $(seq $FIRST $LAST); do cmds+=(-c "write -P $(pat $k) $((k * 4096)) 4k"); done
qemu-io -f raw "${cmds[@]}" "$URI" >/dev/null || fail "write A"
td_stop "$TD_PID" || fail "tapdisk A exit"
td_serve "crypt:aio:$B" "$SOCK"
qemu-io -f raw -c "write -P 0x99 $((10 * 4096)) 4k" "$URI" >/dev/null || fail "write B"
td_stop "$TD_PID" || fail "tapdisk B exit"
cp --sparse=always "$A" "$T/pristine.img"

# byte helpers on the image file
flip() { # FILE OFFSET: xor one byte with 0x5a
	python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x5a]))
PY
}
swap() { # FILE OFF1 OFF2 LEN
	python3 - "$@" <<'PY'
import sys
fn, a, b, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(fn, "r+b") as f:
    f.seek(a); x = f.read(n); f.seek(b); y = f.read(n)
    f.seek(a); f.write(y); f.seek(b); f.write(x)
PY
}
copy_from() { # SRC DST OFF LEN
	dd if="$1" of="$2" bs=1 skip="$3" seek="$3" count="$4" conv=notrunc status=none
}
data_off() { echo $((DS + $1 * 4096)); }
entry_off() { echo $((TAGS + $1 * ES)); }

# check NAME BAD... : serve A, read every block of the window through a
# fresh qemu-io each, expect EIO exactly on BAD, count and log them
check() {
	local name=$1 k bad out n want=0 got log=$TAPDISK_RUNDIR/tapdisk.log from
	shift
	info "$name"
	from=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
	td_serve "crypt:aio:$A" "$SOCK"
	for k in $(seq $FIRST $LAST); do
		bad=0
		for b in "$@"; do [ "$b" = "$k" ] && bad=1; done
		out=$(qemu-io -f raw -c "read -P $(pat $k) $((k * 4096)) 4k" "$URI" 2>&1)
		if [ $bad = 1 ]; then
			want=$((want + 1))
			grep -q "read failed: Input/output error" <<<"$out" ||
				fail "$name: block $k was not refused: $out"
			tail -c +"$from" "$log" |
				grep -q "integrity: block $k (byte offset $((k * 4096))) failed verif" ||
				fail "$name: block $k not named in the log"
		else
			grep -q "read 4096/4096" <<<"$out" && ! grep -qi "fail" <<<"$out" ||
				fail "$name: neighbour block $k: $out"
		fi
	done
	got=$(stat_of -p "$TD_PID" integrity_failures)
	[ "$got" = "$want" ] || fail "$name: integrity_failures=$got, expected $want"
	# the rest of the disk keeps working: a write elsewhere round-trips
	n=$(qemu-io -f raw -c "write -P 0x77 1M 8k" -c "read -P 0x77 1M 8k" "$URI" 2>&1)
	grep -qi "fail" <<<"$n" && fail "$name: the disk stopped working: $n"
	td_stop "$TD_PID" || fail "$name: tapdisk exit"
	cp --sparse=always "$T/pristine.img" "$A"
	rm -rf "$TDCRYPT_STATE_DIR"/*/generation
}

check "untouched image: every block verifies"

flip "$A" $(($(data_off 12) + 1234))
check "one flipped ciphertext byte in block 12" 12

flip "$A" $(($(entry_off 12) + TO + 7))
check "one flipped byte of block 12's tag" 12

flip "$A" $(($(entry_off 12) + 0))
check "one flipped byte of block 12's sequence number (a MAC input)" 12

swap "$A" "$(data_off 9)" "$(data_off 13)" 4096
check "ciphertext of blocks 9 and 13 swapped" 9 13

swap "$A" "$(data_off 9)" "$(data_off 13)" 4096
swap "$A" "$(entry_off 9)" "$(entry_off 13)" "$ES"
check "blocks 9 and 13 swapped together with their table entries" 9 13

copy_from "$B" "$A" "$(data_off 10)" 4096
copy_from "$B" "$A" "$(entry_off 10)" "$ES"
check "block 10 and its entry copied from another image (other key and uuid)" 10

info "a rewritten block verifies again"
flip "$A" $(($(data_off 12) + 99))
td_serve "crypt:aio:$A" "$SOCK"
qemu-io -f raw -c "read $((12 * 4096)) 4k" "$URI" 2>&1 | grep -q "Input/output error" ||
	fail "tampered block 12 was readable"
out=$(qemu-io -f raw -c "write -P 0x33 $((12 * 4096)) 4k" -c "read -P 0x33 $((12 * 4096)) 4k" \
	"$URI" 2>&1)
grep -qi "fail" <<<"$out" && fail "rewrite of block 12: $out"
td_stop "$TD_PID" || fail "exit"
echo ok
