#!/bin/bash
# Attack: pause an encrypted VBD and unpause it on a plain image of the
# same size (`tap-ctl unpause -a aio:PLAIN`): the guest's next writes
# would land in cleartext. Or unpause it on another tenant's encrypted
# image. A new spec must stack the same drivers and open the same image
# (same UUID), else it is refused and the VBD stays paused on its own
# image; the snapshot and migration flows, which keep both, still work.
# And code running as the tapdisk's own uid cannot steer it: its control
# socket admits root (and whoever started it), never that uid.
# (SECURITY.md, "a compromised tapdisk" / "the control socket")
. "$TD_SRC/tests/lib/common.sh"
need qemu-io python3 setpriv
KEY=$T/key
printf 'unpause test' >"$KEY"
IMG=$T/disk.img
truncate -s 64M "$IMG" "$T/other.img"
crypt_image "aio:$IMG" "$KEY"
crypt_image "aio:$T/other.img" "$KEY"
U=$(tap-ctl create -a "crypt:aio:$IMG") || fail create
SOCK=${U#nbd+unix:///?socket=}
DSIZE=$(vdkey list "aio:$IMG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_size"])')
truncate -s "$DSIZE" "$T/plain.img" # exactly the exported size
qemu-io -f raw -c "write -P 0x3c 0 1M" "$U" >/dev/null || fail "write"

info "unpause on a plain image of the same size is refused"
tap-ctl pause -s "$SOCK" || fail pause
out=$(tap-ctl unpause -s "$SOCK" -a "aio:$T/plain.img" 2>&1) && fail "unpaused onto a plain image"
echo "$out" | grep -q "must stack the same drivers" || fail "message: $out"
echo "   refused: $out"
info "unpause on another image (another UUID) is refused"
out=$(tap-ctl unpause -s "$SOCK" -a "crypt:aio:$T/other.img" 2>&1) && fail "unpaused onto another image"
echo "$out" | grep -qE "not the image this tapdisk serves|UUID differs" || fail "message: $out"
echo "   refused: $out"
tap-ctl list | grep -q paused || fail "not paused any more"

info "the VBD resumes on its own image; a write is encrypted"
tap-ctl unpause -s "$SOCK" || fail unpause
MARK="CLEARTEXT-MARKER-$RANDOM"
python3 -c "import sys; sys.stdout.write(('$MARK' * 100000)[:1048576])" >"$T/mark"
qemu-io -f raw -c "write -s $T/mark 1M 1M" "$U" >/dev/null || fail "write marker"
qemu-io -f raw -c "read -P 0x3c 0 1M" "$U" | grep -q "read 1048576" || fail "data"
grep -q "$MARK" "$IMG" "$T/plain.img" && fail "cleartext on disk"

if [ "$(id -u)" = 0 ]; then
	info "the tapdisk's own uid cannot use its control socket"
	P=$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
	TUID=$(awk '/^Uid:/ {print $2}' "/proc/$P/status")
	[ "$TUID" != 0 ] || fail "the tapdisk runs as root"
	CTL=$(ls "$TAPDISK_RUNDIR"/tapdisk.*.ctl)
	chmod 0666 "$CTL" # even with the file open to all, SO_PEERCRED decides
	chmod 0755 "$T" "$TAPDISK_RUNDIR"
	out=$(setpriv --reuid="$TUID" --regid="$TUID" --clear-groups /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"pause\n")
print(s.makefile().read())' "$CTL" 2>&1)
	echo "$out" | grep -q "error: permission denied" || fail "the tapdisk's uid was admitted: $out"
	tap-ctl list | grep -q running || fail "it paused"
fi
tap-ctl destroy -s "$SOCK" || fail destroy
echo ok
