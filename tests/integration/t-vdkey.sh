#!/bin/bash
# vdkey: wrong passphrase, keyslots (enroll, remove, last-slot refusal,
# full table), header copies (corrupt primary, both, forged fields with a
# valid checksum), header backup/restore.
. "$TD_SRC/tests/lib/common.sh"
need python3 keyctl
IMG=$T/disk.img
K1=$T/k1; K2=$T/k2; BAD=$T/bad
printf 'first passphrase' >"$K1"; printf 'second passphrase' >"$K2"; printf 'wrong' >"$BAD"
FAST="--pbkdf pbkdf2 --pbkdf-iterations 1000"
FORGE="python3 $TD_SRC/tests/lib/hdrforge.py"
truncate -s 16M "$IMG"
td_on_exit "vdkey unload aio:$IMG >/dev/null 2>&1"

vdkey --help | grep -q "header-backup" || fail "help"
vdkey format "aio:$IMG" --key-file "$K1" $FAST | grep -q "formatted" || fail "format"
out=$(vdkey format "aio:$IMG" --key-file "$K1" $FAST 2>&1) && fail "re-format without --force"
echo "$out" | grep -q "already has a crypt header" || fail "message: $out"

info "wrong passphrase: refused, exit non-zero, nothing written"
sum=$(sha256sum <"$IMG")
out=$(vdkey load "aio:$IMG" --key-file "$BAD" 2>&1) && fail "wrong passphrase accepted"
echo "$out" | grep -q "wrong passphrase" || fail "message: $out"
out=$(vdkey enroll "aio:$IMG" --key-file "$BAD" --new-key-file "$K2" $FAST 2>&1) && fail "enroll with wrong"
[ "$(sha256sum <"$IMG")" = "$sum" ] || fail "image changed"

info "argon2id (small costs) works too"
truncate -s 16M "$T/argon.img"
vdkey format "aio:$T/argon.img" --key-file "$K1" --pbkdf argon2id --pbkdf-iterations 1 \
	--pbkdf-memory 1024 --pbkdf-parallel 1 >/dev/null || fail "argon2 format"
vdkey list "aio:$T/argon.img" | grep -q "argon2id t=1 m=1024 KiB p=1" || fail "argon2 list"
vdkey load "aio:$T/argon.img" --key-file "$K1" >/dev/null || fail "argon2 unlock"
vdkey unload "aio:$T/argon.img" >/dev/null

info "enroll a second slot, unlock with either, remove one"
vdkey enroll "aio:$IMG" --key-file "$K1" --new-key-file "$K2" $FAST | grep -q "added keyslot 1" ||
	fail "enroll"
vdkey load "aio:$IMG" --key-file "$K1" >/dev/null || fail "unlock with slot 0"
vdkey load "aio:$IMG" --key-file "$K2" | grep -q "keyslot 1" || fail "unlock with slot 1"
vdkey remove "aio:$IMG" --key-file "$K2" --slot 0 | grep -q "removed keyslot 0" || fail "remove"
vdkey load "aio:$IMG" --key-file "$K1" >/dev/null 2>&1 && fail "removed passphrase still works"
out=$(vdkey remove "aio:$IMG" --key-file "$K2" --slot 1 2>&1) && fail "removed the last slot"
echo "$out" | grep -q "last active" || fail "message: $out"
vdkey list "aio:$IMG" --json | python3 -c '
import json,sys; j=json.load(sys.stdin); assert j["keyslots_active"]==1 and j["keyslots"][0]["slot"]==1, j' ||
	fail "list json"

info "filling every slot gives a clear error"
for i in $(seq 2 16); do
	vdkey enroll "aio:$IMG" --key-file "$K2" --new-key-file "$K1" $FAST >/dev/null || fail "enroll $i"
done
out=$(vdkey enroll "aio:$IMG" --key-file "$K2" --new-key-file "$K1" $FAST 2>&1) && fail "17th slot"
echo "$out" | grep -q "all 16 keyslots are in use" || fail "message: $out"

info "header backup"
vdkey header-backup "aio:$IMG" "$T/hdr.bak" | grep -q saved || fail "backup"
vdkey header-backup "aio:$IMG" "$T/hdr.bak" 2>/dev/null && fail "backup overwrote a file"

info "corrupt primary: opens from the secondary and says so"
printf 'garbage!' | dd of="$IMG" bs=1 seek=200 conv=notrunc 2>/dev/null
out=$(vdkey load "aio:$IMG" --key-file "$K2" 2>&1) || fail "load with corrupt primary: $out"
echo "$out" | grep -q "primary header copy is corrupt" || fail "no warning: $out"
vdkey unload "aio:$IMG" >/dev/null
vdkey repair "aio:$IMG" --key-file "$K2" | grep -q rewrote || fail "repair"
out=$(vdkey list "aio:$IMG" 2>&1)
echo "$out" | grep -q "primary ok, secondary ok" || fail "after repair: $out"

info "corrupt both: clear error, nothing written"
printf 'garbage!' | dd of="$IMG" bs=1 seek=200 conv=notrunc 2>/dev/null
printf 'garbage!' | dd of="$IMG" bs=1 seek=$((65536 + 200)) conv=notrunc 2>/dev/null
sum=$(sha256sum <"$IMG")
out=$(vdkey load "aio:$IMG" --key-file "$K2" 2>&1) && fail "opened with both copies corrupt"
echo "$out" | grep -q "corrupt in both copies" || fail "message: $out"
vdkey enroll "aio:$IMG" --key-file "$K2" --new-key-file "$K1" $FAST 2>/dev/null && fail "enroll"
[ "$(sha256sum <"$IMG")" = "$sum" ] || fail "image changed"

info "header-restore brings it back"
vdkey header-restore "aio:$IMG" "$T/hdr.bak" | grep -q restored || fail "restore"
vdkey load "aio:$IMG" --key-file "$K2" >/dev/null || fail "load after restore"
vdkey unload "aio:$IMG" >/dev/null

info "forged settings with a valid checksum are refused after unlock"
ZERO256=$(printf '0%.0s' $(seq 512))
for edit in "integrity none" "cipher aes-xts-plain64x" "data_offset 262144" "data_size 4096"; do
	vdkey header-restore "aio:$IMG" "$T/hdr.bak" >/dev/null || fail "restore"
	set -- $edit
	if [ "$1" = integrity ]; then
		# a header claiming "integrity none": tags and parameters cleared too,
		# checksum recomputed, so only the MAC can tell
		$FORGE "$IMG" tag_size 0
		$FORGE "$IMG" raw:256 "$ZERO256"
	fi
	$FORGE "$IMG" "$1" "$2"
	out=$(vdkey load "aio:$IMG" --key-file "$K2" 2>&1) && fail "forged $edit accepted"
	echo "$out" | grep -qE "header authentication failed|corrupt|unsupported" ||
		fail "forged $edit: $out"
done
# the forged header (authentic key loaded from the good header) must not open in tapdisk either
vdkey header-restore "aio:$IMG" "$T/hdr.bak" >/dev/null
vdkey load "aio:$IMG" --key-file "$K2" >/dev/null || fail "load"
$FORGE "$IMG" data_offset 262144
out=$(tapdisk serve "crypt:aio:$IMG" --socket "$T/s" 2>&1) && fail "tapdisk opened a forged header"
echo "$out" | grep -q "header authentication failed" || fail "tapdisk message: $out"
info "--journal-size: checked, recorded, and a journal of the smallest size takes the largest request"
JI=$T/journal.img
truncate -s 48M "$JI"
for v in 64K 3K 300M 1M5 -4K ""; do
	out=$(vdkey format "aio:$JI" --key-file "$K1" $FAST --journal-size "$v" 2>&1) &&
		fail "--journal-size '$v' accepted"
	echo "$out" | grep -q "bad --journal-size" || fail "--journal-size '$v': $out"
done
out=$(vdkey format "aio:$JI" --key-file "$K1" $FAST --integrity none --journal-size 1M 2>&1) &&
	fail "--journal-size with --integrity none accepted"
echo "$out" | grep -q "needs integrity" || fail "message: $out"
[ "$(head -c 1M "$JI" | tr -d '\0' | wc -c)" = 0 ] || fail "a refused format wrote to the image"
vdkey format "aio:$JI" --key-file "$K1" $FAST --journal-size 1M >/dev/null || fail "format 1M journal"
vdkey list "aio:$JI" --json | grep -q '"journal_blocks": 256' || fail "journal_blocks in list --json"
vdkey list "aio:$JI" | grep -q "1024 KiB MAC journal" || fail "journal size in list"
vdkey load "aio:$JI" --key-file "$K1" >/dev/null || fail "load"
td_on_exit "vdkey unload aio:$JI >/dev/null 2>&1"
JS=$T/journal.sock
td_serve "crypt:aio:$JI" "$JS"
# one 32 MiB request (the largest an NBD client may send) fits, and three
# more overwrite passes take the journal past its checkpoint point; the
# last pass is cut short by kill -9 after its acknowledgement
timeout 60 qemu-io -f raw -c "write -P 0x11 0 32M" -c "write -P 0x22 0 32M" \
	-c "write -P 0x33 0 32M" -c "write -P 0x44 0 32M" -c "read -P 0x44 0 32M" \
	"$(uri_of "$JS")" >"$T/jq.out" 2>&1 || fail "writes through a 1M journal: $(cat "$T/jq.out")"
kill -9 "$TD_PID"
wait "$TD_PID" 2>/dev/null
rm -f "$JS"
td_serve "crypt:aio:$JI" "$JS"
timeout 60 qemu-io -f raw -r -c "read -P 0x44 0 32M" "$(uri_of "$JS")" >"$T/jq.out" 2>&1 ||
	fail "after kill -9 the last acknowledged pass does not read back: $(cat "$T/jq.out")"
td_stop "$TD_PID" || fail "stop"
# a journal smaller than vdkey writes (the format allows 16 blocks): a
# write that cannot fit an empty epoch is refused, not left waiting
vdkey format "aio:$JI" --key-file "$K1" $FAST --journal-blocks 16 --force >/dev/null ||
	fail "format a 16-block journal"
vdkey list "aio:$JI" --json | grep -q '"journal_blocks": 16,' || fail "16-block journal"
vdkey load "aio:$JI" --key-file "$K1" >/dev/null || fail "load"
rm -f "$JS"
td_serve "crypt:aio:$JI" "$JS"
timeout 30 qemu-io -f raw -c "write -P 0x55 0 1M" -c "read -P 0x55 0 1M" "$(uri_of "$JS")" \
	>"$T/jq.out" 2>&1 || fail "1M write through a 16-block journal: $(cat "$T/jq.out")"
out=$(timeout 30 qemu-io -f raw -c "write -P 0x66 0 8M" "$(uri_of "$JS")" 2>&1)
rc=$?
[ $rc = 124 ] && fail "an 8M write through a 16-block journal hangs"
echo "$out" | grep -qi "invalid argument" || fail "8M write through a 16-block journal: $out"
grep -q "does not fit the 16-block MAC journal" "$TAPDISK_RUNDIR/tapdisk.log" || fail "no log line"
timeout 30 qemu-io -f raw -r -c "read -P 0x55 0 1M" "$(uri_of "$JS")" >/dev/null ||
	fail "the refused write changed data"
kill -TERM "$TD_PID"
for i in $(seq 1 100); do kill -0 "$TD_PID" 2>/dev/null || break; sleep 0.2; done
kill -0 "$TD_PID" 2>/dev/null && fail "tapdisk does not stop after a refused write"
wait "$TD_PID" || fail "tapdisk exit status after a refused write"
echo ok
