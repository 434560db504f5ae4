#!/bin/bash
# README's "Using it with libvirt, QEMU and Xen" examples, read from
# README.md (tests/lib/readme_clients.py): the QEMU -drive line, the
# -blockdev nodes, and the libvirt <disk> (turned into the nbd and raw
# nodes libvirt gives QEMU), each opened with qemu-io — the QEMU block
# layer that qemu-system and libvirt use; neither qemu-system nor libvirtd
# can run on the test machines — against a tapdisk serving an encrypted
# disk with the export name the libvirt example sends.
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io python3

truncate -s 128M "$T/vm1.img"
head -c 32 /dev/urandom | base64 >"$T/pw"
crypt_image "aio:$T/vm1.img" "$T/pw"
SOCK=$T/vm1.sock
td_serve "crypt:aio:$T/vm1.img" "$SOCK" --export-name vm1
python3 "$TD_SRC/tests/lib/readme_clients.py" "$TD_SRC/README.md" "$SOCK" >"$T/clients" ||
	fail "the README's client examples cannot be read"
[ "$(wc -l <"$T/clients")" = 3 ] || fail "expected 3 examples: $(cat "$T/clients")"
n=0
while IFS=$'\t' read -r name args; do
	n=$((n + 1))
	eval "set -- $args"
	info "$name: qemu-io $*"
	pat=$((0x10 + n))
	qemu-io "$@" -c "write -P $pat $((n * 8))M 1M" -c "read -P $pat $((n * 8))M 1M" -c flush \
		>"$T/out" 2>&1 || fail "$name: $(cat "$T/out")"
	! grep -q "Pattern verification failed" "$T/out" || fail "$name: $(cat "$T/out")"
	grep "^read" "$T/out" | sed 's/^/   /'
done <"$T/clients"
info "every example's data, read back through the URI"
for i in 1 2 3; do
	qemu-io -f raw -r -c "read -P $((0x10 + i)) $((i * 8))M 1M" "$(uri_of "$SOCK")" >"$T/out" 2>&1 ||
		fail "read back $i: $(cat "$T/out")"
	! grep -q "Pattern verification failed" "$T/out" || fail "example $i's data: $(cat "$T/out")"
done
td_stop "$TD_PID" || fail "tapdisk exit"
echo ok
