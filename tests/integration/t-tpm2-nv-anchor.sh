#!/bin/bash
# The rollback anchor in a TPM NV counter (docs/FORMAT.md, "Rollback anchor
# in a TPM NV counter") against a real software TPM (swtpm) this test
# starts. An attacker who restores the host's state directory (/var) along
# with an older copy of the image is not noticed by the state directory
# (shown first, on an image without the anchor); with `vdkey anchor
# --tpm2-nv` the next load refuses it, whether the whole image or only its
# data behind the current header was put back; `vdkey anchor` again accepts
# a deliberate restore; audit --json names the anchor. tpm2-tools (an
# independent TPM client) reads the counter.
. "$TD_SRC/tests/lib/common.sh"
need swtpm tpm2_nvread tpm2_pcrread qemu-io python3 keyctl

. "$TD_SRC/tests/lib/tokens.sh"
start_swtpm tpm
export TPM2TOOLS_TCTI=$TCTI_tpm

KEY=$T/pass
printf 'nv anchor test %s' "$RANDOM" >"$KEY"
FAST="--pbkdf pbkdf2 --pbkdf-iterations 1000"
SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")

# session IMG PATTERN: load, serve, write PATTERN at 1M, stop, unload
session() {
	vdkey load "aio:$1" --key-file "$KEY" >/dev/null || fail "load $1"
	td_serve "crypt:aio:$1" "$SOCK"
	qemu-io -f raw -c "write -P $2 1M 64k" "$URI" >/dev/null || fail "write $2"
	td_stop "$TD_PID" || fail "tapdisk exit"
	vdkey unload "aio:$1" >/dev/null || fail "unload"
}
# reads IMG PATTERN: the data at 1M is PATTERN
reads() {
	vdkey load "aio:$1" --key-file "$KEY" >/dev/null || return 1
	td_serve "crypt:aio:$1" "$SOCK"
	qemu-io -f raw -c "read -P $2 1M 64k" "$URI" >/dev/null
	local rc=$?
	td_stop "$TD_PID" || fail "tapdisk exit"
	vdkey unload "aio:$1" >/dev/null
	return $rc
}

for name in plain nv; do
	truncate -s 32M "$T/$name.img"
	vdkey format "aio:$T/$name.img" --key-file "$KEY" $FAST >/dev/null || fail "format $name"
	td_on_exit "vdkey unload aio:$T/$name.img >/dev/null 2>&1"
done

info "vdkey anchor --tpm2-nv defines a counter; tpm2_nvread sees the value the header records"
out=$(vdkey anchor "aio:$T/nv.img" --key-file "$KEY" --tpm2-nv) || fail "anchor: $out"
echo "$out" | grep -q "anchored the image at TPM NV counter 0x01800100" || fail "anchor: $out"
vdkey audit "aio:$T/nv.img" --json >"$T/audit.json"
python3 - "$T/audit.json" <<'PY' || fail "audit --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["rollback_anchor"] == "tpm2-nv", j["rollback_anchor"]
assert j["tpm2_nv"]["index"] == "0x01800100", j["tpm2_nv"]
PY
rec=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tpm2_nv"]["counter"])' "$T/audit.json")
tpm=$(tpm2_nvread 0x01800100 -s 8 | xxd -p)
[ $((16#$tpm)) = "$rec" ] || fail "TPM counter $((16#$tpm)), header records $rec"
vdkey audit "aio:$T/plain.img" --json | python3 -c '
import json, sys; j = json.load(sys.stdin); assert j["rollback_anchor"] == "state-directory", j' ||
	fail "audit --json of the plain image"

info "sessions A (backed up, with /var) then B, on both images"
for name in plain nv; do
	session "$T/$name.img" 0x0a
	cp --sparse=always "$T/$name.img" "$T/$name.bak"
done
cp -a "$TDCRYPT_STATE_DIR" "$T/state.bak"
for name in plain nv; do session "$T/$name.img" 0x0b; done

info "restore image + /var: the state directory alone does not notice"
restore_all() {
	cp --sparse=always "$T/$1.bak" "$T/$1.img"
	rm -rf "$TDCRYPT_STATE_DIR"
	cp -a "$T/state.bak" "$TDCRYPT_STATE_DIR"
}
restore_all plain
reads "$T/plain.img" 0x0a || fail "the plain image was not rolled back as expected"

info "... the TPM NV counter does: load refuses, no key loaded"
restore_all nv
out=$(vdkey load "aio:$T/nv.img" --key-file "$KEY" 2>&1) && fail "a rolled-back image loaded"
echo "$out" | grep -q "the image was rolled back: its header was written at TPM counter" ||
	fail "message: $out"
keyctl search @u user "$(key_desc "aio:$T/nv.img")" >/dev/null 2>&1 && fail "a key was loaded"
vdkey log "aio:$T/nv.img" | awk '$4 == "load" {l = $6} END {exit l != "fail"}' ||
	fail "the refusal is not a key event"

info "a deliberate restore is accepted with vdkey anchor again"
vdkey anchor "aio:$T/nv.img" --key-file "$KEY" --tpm2-nv >/dev/null || fail "re-anchor"
reads "$T/nv.img" 0x0a || fail "the accepted restore does not read"

info "data put back behind the current header (+ /var): refused as well"
session "$T/nv.img" 0x0c
cp --sparse=always "$T/nv.img" "$T/nv.bak2"
cp -a "$TDCRYPT_STATE_DIR" "$T/state.bak2"
session "$T/nv.img" 0x0d
session "$T/nv.img" 0x0e
# everything after the two header copies (0 and 64 KiB, 16 KiB each)
dd if="$T/nv.bak2" of="$T/nv.img" bs=64k skip=2 seek=2 conv=notrunc,sparse status=none
rm -rf "$TDCRYPT_STATE_DIR"
cp -a "$T/state.bak2" "$TDCRYPT_STATE_DIR"
out=$(vdkey load "aio:$T/nv.img" --key-file "$KEY" 2>&1) && fail "old data behind a new header loaded"
echo "$out" | grep -q "its data is at generation" || fail "message: $out"

info "the counter is the TPM's: another index given is refused, a bad one too"
out=$(vdkey anchor "aio:$T/nv.img" --key-file "$KEY" --tpm2-nv --nv-index 0x01800200 2>&1) &&
	fail "re-anchored at another index"
echo "$out" | grep -q "anchored at NV index 0x01800100 already" || fail "message: $out"
out=$(vdkey anchor "aio:$T/plain.img" --key-file "$KEY" --tpm2-nv --nv-index 0x81000000 2>&1) &&
	fail "a persistent-object handle accepted"
echo "$out" | grep -q "bad --nv-index" || fail "message: $out"
echo ok
