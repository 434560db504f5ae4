#!/bin/bash
# Corrupt and hostile VHD images (tests/lib/vhdevil.py, from images QEMU
# wrote): truncated files, bad cookies and checksums, huge and odd sizes,
# BAT entries outside the file or on its metadata or on each other, bad
# header fields, differencing disks whose parent is missing, itself, in a
# loop, of another UUID, behind a symbolic link or outside the allowed
# directories (backing-dir= then allows it), a chain of 34. Each is refused by
# `tapdisk serve` (read-write and --readonly) with a clear message naming
# the problem and a non-zero exit; no image file ever changes or grows.
# A file cut short under a running server answers EIO past the cut; a file
# that grew without its footer opens from the copy and gets it back.
. "$TD_SRC/tests/lib/common.sh"
need python3 qemu-img qemu-io sha256sum

D=$T/evil
SOCK=$T/e.sock
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/good.vhd" 16M
qemu-io -f vpc -c "write -P 0xab 0 64k" -c "write -P 0xcd 2M 64k" "$T/good.vhd" >/dev/null ||
	fail "qemu-io"
qemu-img create -q -f vpc -o subformat=fixed,force_size=on "$T/good-fixed.vhd" 16M
python3 "$TD_SRC/tests/lib/vhdevil.py" "$D" "$T/good.vhd" "$T/good-fixed.vhd" >"$T/manifest" ||
	fail "generator"
state() { (cd "$D" && find . -type f -printf '%s %p\n' | sort && find . -type f -exec sha256sum {} + | sort); }
before=$(state)

n=0
while IFS='|' read -r name mode expect img; do
	[ "$mode" = refuse ] || fail "manifest: $name|$mode"
	for ro in "" --readonly; do
		out=$(timeout 20 tapdisk serve "vhd:$img" --socket "$SOCK" $ro 2>&1 </dev/null)
		rc=$?
		[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$name $ro: exit status $rc: $out"
		echo "$out" | grep -qF -- "$expect" || fail "$name $ro: message lacks '$expect': $out"
		[ "$(printf '%s\n' "$out" | grep -c "error")" -eq 1 ] || fail "$name $ro: not one error line: $out"
		[ -S "$SOCK" ] && fail "$name: socket left behind"
	done
	echo "   $name: $(echo "$out" | grep error | sed 's/.*error: //')"
	n=$((n + 1))
done <"$T/manifest"
# the driver option backing-dir= allows the outside parent's directory
td_serve "vhd,backing-dir=$T/outside:$D/parent-outside.vhd" "$SOCK" --readonly
qemu-io -r -f raw -c "read -P 0xab 0 64k" -c "read -P 0xcd 2M 64k" "$(uri_of "$SOCK")" 2>&1 |
	grep -qi "verification failed" && fail "backing-dir= chain does not read"
td_stop "$TD_PID" || fail "exit status (backing-dir)"
[ "$(state)" = "$before" ] || fail "an image file changed"
# the originals still serve (the generator changed only the copies)
td_serve "vhd:$T/good.vhd" "$SOCK" --readonly
qemu-io -r -f raw -c "read -P 0xab 0 64k" -c "read -P 0xcd 2M 64k" "$(uri_of "$SOCK")" 2>&1 |
	grep -qi "verification failed" && fail "the good image does not read back"
td_stop "$TD_PID" || fail "exit status"
# the file shrinks under a running server (another root process cut it):
# the blocks now past its end answer EIO, the rest still reads, no crash
cp "$T/good.vhd" "$T/cut.vhd"
td_serve "vhd:$T/cut.vhd" "$SOCK" --readonly
truncate -s 1M "$T/cut.vhd"
out=$(qemu-io -r -f raw -c "read 2M 64k" "$(uri_of "$SOCK")" 2>&1)
echo "$out" | grep -qi "input/output error" || fail "read past the cut: expected EIO, got: $out"
qemu-io -r -f raw -c "read -P 0xab 0 64k" "$(uri_of "$SOCK")" 2>&1 | grep -q "^read " ||
	fail "the block before the cut does not read"
kill -0 "$TD_PID" 2>/dev/null || fail "tapdisk died"
td_stop "$TD_PID" || fail "exit status (cut)"
# a crash while the file grew (size extended, footer not written): the last
# 512 bytes hold no cookie; the copy at offset 0 opens it, with a warning,
# and a writable open writes the footer back at the end
cp "$T/good.vhd" "$T/grown.vhd"
qemu-img convert -f vpc -O raw "$T/good.vhd" "$T/good.raw"
truncate -s +4096 "$T/grown.vhd"
td_serve "vhd:$T/grown.vhd" "$SOCK"
qemu-io -f raw -c "read -P 0xab 0 64k" "$(uri_of "$SOCK")" 2>&1 | grep -q "^read " ||
	fail "the grown image does not read"
td_stop "$TD_PID" || fail "exit status (grown)"
grep -q "no footer in the last 512 bytes" "$TAPDISK_RUNDIR/tapdisk.log" || fail "no warning"
[ "$(tail -c 512 "$T/grown.vhd" | head -c 8)" = conectix ] || fail "footer not written back"
out=$(qemu-img compare -f vpc -F raw "$T/grown.vhd" "$T/good.raw" 2>&1) ||
	fail "the recovered image differs: $out"
[ $n -ge 25 ] || fail "too few cases ($n)"
echo "$n hostile images refused (read-write and read-only); no file changed"
