#!/bin/bash
# TPM2 keyslots (docs/FORMAT.md, "TPM2 token") against a real software TPM
# (swtpm) this test starts: enroll a crypt:qcow2 image with --tpm2, load
# it with no passphrase and read data back through tapdisk; a changed PCR
# makes the TPM refuse (a message naming the PCR policy; the passphrase
# still works, --token-only fails); a token copied into another image's
# header does not open it (AAD binding); another TPM cannot unseal; an
# unreachable TPM is said; audit --json names the slot kinds. tpm2-tools
# (an independent TPM client) extends the PCR.
. "$TD_SRC/tests/lib/common.sh"
need swtpm tpm2_pcrextend tpm2_pcrread qemu-img qemu-io python3 keyctl

. "$TD_SRC/tests/lib/tokens.sh"

start_swtpm tpmA
TCTI_A=$TCTI_tpmA
start_swtpm tpmB
TCTI_B=$TCTI_tpmB
unset TPM2TOOLS_TCTI TCTI

KEY=$T/pass
printf 'tpm2 test passphrase %s' "$RANDOM" >"$KEY"
FAST="--pbkdf pbkdf2 --pbkdf-iterations 1000"
Q=$T/disk.qcow2
SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")
qemu-img create -q -f qcow2 "$Q" 64M
vdkey format "qcow2:$Q" --key-file "$KEY" $FAST >/dev/null || fail "format"
td_on_exit "vdkey unload qcow2:$Q >/dev/null 2>&1"

info "data written under the passphrase"
vdkey load "qcow2:$Q" --key-file "$KEY" >/dev/null || fail "load with the passphrase"
td_serve "crypt:qcow2:$Q" "$SOCK"
qemu-io -f raw -c "write -P 0x5a 1M 256k" -c "write -P 0xa5 40M 64k" "$URI" >/dev/null ||
	fail "write"
td_stop "$TD_PID" || fail "tapdisk exit"
vdkey unload "qcow2:$Q" >/dev/null || fail "unload"

info "enroll --tpm2 --pcrs 16 (the TPM named by --tpm2-device)"
out=$(vdkey enroll "qcow2:$Q" --key-file "$KEY" --tpm2 --pcrs 16 --tpm2-device "$TCTI_A") ||
	fail "enroll --tpm2: $out"
echo "$out" | grep -q "added keyslot 1 (tpm2, PCR 16 of the sha256 bank)" || fail "enroll: $out"
out=$(vdkey enroll "qcow2:$Q" --key-file "$KEY" --tpm2 --pcrs 24 --tpm2-device "$TCTI_A" 2>&1) &&
	fail "PCR 24 accepted"
echo "$out" | grep -q "bad --pcrs" || fail "message: $out"

info "audit --json: slot kinds and the rollback anchor"
vdkey audit "qcow2:$Q" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
kinds = {s["slot"]: s["kind"] for s in j["keyslots"]}
assert kinds == {0: "passphrase", 1: "tpm2"}, kinds
t = [s for s in j["keyslots"] if s["slot"] == 1][0]
assert t["tpm2"] == {"pcr_bank": "sha256", "pcrs": [16]}, t
assert j["rollback_anchor"] == "state-directory", j["rollback_anchor"]' || fail "audit --json"

info "load with no passphrase (TPM from TPM2TOOLS_TCTI), data reads back through tapdisk"
out=$(TPM2TOOLS_TCTI=$TCTI_A vdkey load "qcow2:$Q" --token-only </dev/null 2>&1) ||
	fail "TPM2 load: $out"
echo "$out" | grep -q "keyslot 1" || fail "not opened by the TPM2 slot: $out"
td_serve "crypt:qcow2:$Q" "$SOCK"
qemu-io -f raw -c "read -P 0x5a 1M 256k" -c "read -P 0xa5 40M 64k" -c "read -P 0 8M 64k" \
	"$URI" >/dev/null || fail "data read back differs"
td_stop "$TD_PID" || fail "tapdisk exit"
vdkey unload "qcow2:$Q" >/dev/null || fail "unload"
# and TCTI, the variable libtss2 itself reads, with libtss2's trace logging
# asked for: vdkey switches it off (it would print command buffers)
out=$(TCTI=$TCTI_A TSS2_LOG=all+trace vdkey load "qcow2:$Q" --token-only </dev/null 2>&1) ||
	fail "load with TCTI: $out"
echo "$out" | grep -qi "trace" && fail "libtss2 trace output: $out"
vdkey unload "qcow2:$Q" >/dev/null

info "another TPM cannot unseal it"
out=$(vdkey load "qcow2:$Q" --token-only --tpm2-device "$TCTI_B" </dev/null 2>&1) &&
	fail "another TPM unsealed the key"
echo "$out" | grep -q "sealed by another TPM" || fail "message: $out"

info "an unreachable TPM is said, then the passphrase is used"
DEAD=$(free_port_pair)
out=$(vdkey load "qcow2:$Q" --tpm2-device "swtpm:host=127.0.0.1,port=$DEAD" --key-file "$KEY" 2>&1) ||
	fail "fallback to the passphrase: $out"
echo "$out" | grep -q "keyslot 1 (tpm2): cannot reach the TPM" || fail "message: $out"
echo "$out" | grep -q "keyslot 0" || fail "not opened by the passphrase: $out"
vdkey unload "qcow2:$Q" >/dev/null

info "a token copied into another image's header does not open it"
A=$T/a.img B=$T/b.img
truncate -s 16M "$A" "$B"
vdkey format "aio:$A" --key-file "$KEY" $FAST >/dev/null || fail "format A"
vdkey format "aio:$B" --key-file "$KEY" $FAST >/dev/null || fail "format B"
vdkey enroll "aio:$A" --key-file "$KEY" --tpm2 --pcrs 16 --tpm2-device "$TCTI_A" >/dev/null ||
	fail "enroll A"
td_on_exit "vdkey unload aio:$B >/dev/null 2>&1"
for off in $((1024 + 256)):256 $((5120 + 640)):640; do
	hex=$(dd if="$A" bs=1 skip="${off%:*}" count="${off#*:}" 2>/dev/null | xxd -p | tr -d '\n')
	python3 "$TD_SRC/tests/lib/hdrforge.py" "$B" "raw:${off%:*}" "$hex" || fail "forge"
done
vdkey list "aio:$B" | grep -q "1: tpm2" || fail "B does not show the copied slot"
out=$(vdkey load "aio:$B" --token-only --tpm2-device "$TCTI_A" </dev/null 2>&1) &&
	fail "a copied token opened another image"
echo "$out" | grep -q "does not open this keyslot" || fail "message: $out"

info "a changed PCR: the TPM refuses, the message names the PCR policy"
tpm2_pcrextend -T "$TCTI_A" 16:sha256=$(printf '%064d' 1) || fail "tpm2_pcrextend"
out=$(vdkey load "qcow2:$Q" --token-only --tpm2-device "$TCTI_A" </dev/null 2>&1) &&
	fail "unsealed with PCR 16 changed"
echo "$out" | grep -q "PCR policy does not hold (PCR 16 of the sha256 bank changed" ||
	fail "message: $out"
echo "$out" | grep -q "not asking for a passphrase (--token-only)" || fail "message: $out"
keyctl search @u user "$(key_desc "qcow2:$Q")" >/dev/null 2>&1 && fail "a key was loaded"
out=$(vdkey load "qcow2:$Q" --tpm2-device "$TCTI_A" --key-file "$KEY" 2>&1) ||
	fail "fallback to the passphrase: $out"
echo "$out" | grep -q "PCR policy does not hold" || fail "no reason given: $out"
echo "$out" | grep -q "falling back to the passphrase" || fail "message: $out"
echo "$out" | grep -q "keyslot 0" || fail "not opened by the passphrase: $out"
td_serve "crypt:qcow2:$Q" "$SOCK"
qemu-io -f raw -c "read -P 0x5a 1M 256k" "$URI" >/dev/null || fail "data after fallback"
td_stop "$TD_PID" || fail "tapdisk exit"
# the refusals are key events: a failed load by keyslot 1, then the load by 0
vdkey log "qcow2:$Q" | awk '$4 == "load" && $5 == "1" && $6 == "fail"' | grep -q . ||
	fail "no failed TPM2 load in the key-event log"
vdkey log "qcow2:$Q" | awk '$4 == "load" {l = $5 " " $6} END {exit l != "0 ok"}' ||
	fail "the last load is not keyslot 0's"
echo ok
