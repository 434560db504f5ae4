#!/bin/bash
# A 1 TiB encrypted, integrity-checked image opens and serves without
# reading all its metadata: bounded memory, sparse on disk.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl python3
IMG=$T/big.img
truncate -s 1T "$IMG" 2>/dev/null || skip "the filesystem under $T cannot hold a 1 TiB sparse file"
printf '1tib test' >"$T/key"
vdkey format "aio:$IMG" --key-file "$T/key" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null || fail format
vdkey load "aio:$IMG" --key-file "$T/key" >/dev/null || fail load
td_on_exit "vdkey unload aio:$IMG >/dev/null 2>&1"
used=$(du -k "$IMG" | cut -f1)
[ "$used" -lt 65536 ] || fail "format allocated $used KiB of a sparse image"
td_serve "crypt:aio:$IMG" "$T/s"
URI=$(uri_of "$T/s")
for off in 0 1G 500G 1000G; do
	qemu-io -f raw -c "write -P 0x5e $off 1M" -c "read -P 0x5e $off 1M" "$URI" |
		grep -q "read 1048576" || fail "write/read at $off"
done
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$TD_PID/status")
echo "peak RSS $((hwm / 1024)) MiB"
[ "$hwm" -lt $((64 * 1024)) ] || fail "peak RSS $hwm KiB"
td_stop "$TD_PID" || fail "exit"
td_serve "crypt:aio:$IMG" "$T/s"
qemu-io -f raw -c "read -P 0x5e 1000G 1M" -c "read -P 0 700G 1M" "$URI" | grep -c "read 1048576" |
	grep -q 2 || fail "read back after reopen"
td_stop "$TD_PID" || fail "exit"
echo ok
