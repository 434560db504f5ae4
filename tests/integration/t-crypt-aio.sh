#!/bin/bash
# crypt:aio end to end: format, load, serve; ciphertext at rest; round
# trips through real clients and a fresh process; no key -> clear refusal;
# secrets nowhere in argv, environ or logs; the tapdisk is not dumpable.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io nbdcopy keyctl python3
IMG=$T/disk.img
SOCK=$T/nbd.sock
KEY=$T/pass
URI=$(uri_of "$SOCK")
truncate -s 140M "$IMG"
printf 'correct horse battery staple %s' "$RANDOM$RANDOM" >"$KEY"
vdkey format "aio:$IMG" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
	fail "format"
UUID=$(vdkey list "aio:$IMG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
td_on_exit "vdkey unload aio:$IMG >/dev/null 2>&1"
vdkey unload "aio:$IMG" >/dev/null 2>&1

info "no key loaded: tapdisk refuses with a clear message"
out=$(tapdisk serve "crypt:aio:$IMG" --socket "$SOCK" 2>&1) && fail "served without a key"
echo "$out" | grep -q "no key loaded for image $UUID: run 'vdkey load" || fail "message: $out"
out=$(tap-ctl create -a "crypt:aio:$IMG" 2>&1) && fail "tap-ctl create without a key"
echo "$out" | grep -q "no key loaded" || fail "tap-ctl message: $out"

info "load and serve"
vdkey load "crypt:aio:$IMG" --key-file "$KEY" >/dev/null || fail "load"
vdkey list "aio:$IMG" | grep -q "Key loaded:   yes" || fail "list does not show the key"
td_serve "crypt:aio:$IMG" "$SOCK"
DSIZE=$(vdkey list "aio:$IMG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_size"])')
[ "$(nbdinfo --size "$URI")" = "$DSIZE" ] || fail "exported size $(nbdinfo --size "$URI"), header says $DSIZE"
[ "$DSIZE" -ge $((128 << 20)) ] || fail "data size $DSIZE too small for this test"

info "a marker written by the client appears nowhere in the image"
MARK="TOPSECRET-MARKER-$RANDOM-$RANDOM"
python3 -c "import sys; m='$MARK'; sys.stdout.write((m * ((64 << 20) // len(m) + 1))[:64 << 20])" \
	>"$T/marked.raw"
nbdcopy "$T/marked.raw" "$URI" || fail "nbdcopy"
qemu-io -f raw -c "write -P 0x41 100M 8k" "$URI" >/dev/null || fail "write"
grep -c "$MARK" "$IMG" && fail "marker found in the image file"
grep -q "TOPSECRET" "$IMG" && fail "marker prefix found in the image file"

info "the same plaintext at two blocks gives different ciphertext"
off=$(( (1 << 20) + (100 << 20) ))
b0=$(dd if="$IMG" bs=4096 skip=$((off / 4096)) count=1 2>/dev/null | sha256sum)
b1=$(dd if="$IMG" bs=4096 skip=$((off / 4096 + 1)) count=1 2>/dev/null | sha256sum)
[ "$b0" != "$b1" ] || fail "identical ciphertext for identical plaintext"
dd if="$IMG" bs=4096 skip=$((off / 4096)) count=2 2>/dev/null | grep -q AAAA && fail "plaintext at rest"

info "secrets are in neither argv, environ nor the log; not dumpable"
PASS=$(cat "$KEY")
VKHEX=$(keyctl pipe "$(keyctl search @u user "$(key_desc "aio:$IMG")")" | head -c 64 | od -An -tx1 | tr -d ' \n')
[ ${#VKHEX} = 128 ] || fail "could not read the volume key for the check"
for f in cmdline environ; do
	tr '\0' '\n' <"/proc/$TD_PID/$f" | grep -qF "$PASS" && fail "passphrase in $f"
	od -An -tx1 <"/proc/$TD_PID/$f" | tr -d ' \n' | grep -q "$VKHEX" && fail "volume key in $f"
done
grep -qF "$PASS" "$TAPDISK_RUNDIR/tapdisk.log" && fail "passphrase in the log"
od -An -tx1 "$TAPDISK_RUNDIR/tapdisk.log" | tr -d ' \n' | grep -q "$VKHEX" && fail "key in the log"
[ "$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')" = "$TD_PID" ] ||
	fail "list"
tapdisk_info=$(TAPDISK_RUNDIR=$TAPDISK_RUNDIR python3 - <<'PY'
import os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["TAPDISK_RUNDIR"] + "/tapdisk.0.ctl")
s.sendall(b"info\n")
print(s.makefile().read())
PY
)
echo "$tapdisk_info" | grep -q "^dumpable=0" || fail "tapdisk is dumpable: $tapdisk_info"

info "a fresh tapdisk reads back the same data"
nbdcopy "$URI" "$T/back1.raw" || fail "copy out"
td_stop "$TD_PID" || fail "exit"
td_serve "crypt:aio:$IMG" "$SOCK"
nbdcopy "$URI" "$T/back2.raw" || fail "copy out 2"
cmp "$T/back1.raw" "$T/back2.raw" || fail "data changed across restarts"
cmp <(head -c 64M "$T/back2.raw") "$T/marked.raw" || fail "marker data did not round trip"
out=$(qemu-io -f raw -c "read -P 0x41 100M 8k" -c "read -P 0 120M 64k" "$URI" 2>&1)
echo "$out" | grep -q "read 65536/65536" || fail "read: $out"
echo "$out" | grep -qi fail && fail "pattern: $out"
td_stop "$TD_PID" || fail "exit"

info "load --once: the first tapdisk takes the key out of the keyring"
vdkey unload "aio:$IMG" >/dev/null || fail "unload"
vdkey list "aio:$IMG" | grep -q "Key loaded:   no" || fail "unload left the key"
vdkey load "aio:$IMG" --key-file "$KEY" --once >/dev/null || fail "load --once"
td_serve "crypt:aio:$IMG" "$SOCK"
keyctl search @u user "$(key_desc "aio:$IMG")" >/dev/null 2>&1 && fail "key still in the keyring"
td_stop "$TD_PID" || fail "exit"
info "crypt:qcow2: round trip through a fresh process, no plaintext at rest"
if tapdisk drivers | grep -q '^qcow2'; then
	Q=$T/disk.qcow2
	qemu-img create -q -f qcow2 "$Q" 96M
	vdkey format "qcow2:$Q" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
		fail "format qcow2"
	vdkey load "qcow2:$Q" --key-file "$KEY" >/dev/null || fail "load qcow2"
	td_on_exit "vdkey unload qcow2:$Q >/dev/null 2>&1"
	td_serve "crypt:qcow2:$Q" "$SOCK"
	head -c 32M "$T/marked.raw" >"$T/m32.raw"
	nbdcopy "$T/m32.raw" "$URI" || fail "nbdcopy to crypt:qcow2"
	td_stop "$TD_PID" || fail "exit"
	td_serve "crypt:qcow2:$Q" "$SOCK"
	nbdcopy "$URI" "$T/q.raw" || fail "nbdcopy from crypt:qcow2"
	cmp <(head -c 32M "$T/q.raw") "$T/m32.raw" || fail "crypt:qcow2 round trip differs"
	td_stop "$TD_PID" || fail "exit"
	grep -q "TOPSECRET" "$Q" && fail "marker found in the qcow2 file"
	qemu-img check -q "$Q" || fail "qemu-img check"
fi
echo ok
