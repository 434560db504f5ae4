#!/bin/bash
# Attack: while image A's key is loaded (the README flow, no --once),
# someone who can write images hands in a byte copy of A as another disk,
# or renames A, or puts another file with A's UUID in A's place. The UUID
# is written inside the image, so it cannot say which file a key is for:
# a loaded key is bound to the identity of the file it was loaded for
# (path, device, inode, file handle), and opens nothing else. The
# original keeps working; `vdkey load` for the copy makes the copy usable.
# (SECURITY.md, "A loaded key opens only its own image")
. "$TD_SRC/tests/lib/common.sh"
need qemu-io cp
KEY=$T/key
printf 'key binding test' >"$KEY"
A=$T/a.img
truncate -s 64M "$A"
crypt_image "aio:$A" "$KEY"
UA=$(tap-ctl create -a "crypt:aio:$A") || fail "serve A"
qemu-io -f raw -c "write -P 0x5a 0 1M" "$UA" >/dev/null || fail "write A"
tap-ctl destroy -s "${UA#nbd+unix:///?socket=}" || fail "destroy A"

# refused SPEC -- tap-ctl create fails with the message that says what to do
refused() {
	local out
	out=$(tap-ctl create -a "$1" 2>&1) && {
		qemu-io -r -f raw -c "read -P 0x5a 0 1M" "$out" | grep -q "read 1048576" &&
			fail "$1 was served and decrypted with A's key"
		fail "$1 was served"
	}
	echo "$out" | grep -q "belongs to another file" || fail "$1: message: $out"
	echo "$out" | grep -q "run 'vdkey load SPEC' for it" || fail "$1: message: $out"
	echo "   refused: ${out#tap-ctl: }"
}

info "a byte copy of A, handed in as another disk"
cp --sparse=always "$A" "$T/copy.img"
refused "crypt:aio:$T/copy.img"

info "A renamed"
mv "$A" "$T/renamed.img"
refused "crypt:aio:$T/renamed.img"

info "another file with A's UUID put in A's place"
cp --sparse=always "$T/renamed.img" "$A"
refused "crypt:aio:$A"

info "the original, back in its place, still opens; a hard link does not"
mv -f "$T/renamed.img" "$A"
ln "$A" "$T/hardlink.img"
refused "crypt:aio:$T/hardlink.img"
UA=$(tap-ctl create -a "crypt:aio:$A") || fail "A no longer opens"
qemu-io -r -f raw -c "read -P 0x5a 0 1M" "$UA" | grep -q "read 1048576" || fail "A's data"
tap-ctl destroy -s "${UA#nbd+unix:///?socket=}" || fail "destroy A"

info "loading the key for the copy (with its passphrase) makes the copy usable"
vdkey load "aio:$T/copy.img" --key-file "$KEY" >/dev/null || fail "load for the copy"
td_on_exit "vdkey unload aio:$T/copy.img >/dev/null 2>&1"
UC=$(tap-ctl create -a "crypt:aio:$T/copy.img") || fail "the copy with its own key"
qemu-io -r -f raw -c "read -P 0x5a 0 1M" "$UC" | grep -q "read 1048576" || fail "the copy's data"
tap-ctl destroy -s "${UC#nbd+unix:///?socket=}"
vdkey list "aio:$T/copy.img" | grep -q "Key loaded:   yes" || fail "list: the copy's key"
vdkey unload "aio:$T/copy.img" >/dev/null || fail "unload the copy's key"
vdkey list "aio:$A" | grep -q "Key loaded:   yes" || fail "unloading the copy's key removed A's"
echo ok
