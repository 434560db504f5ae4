#!/bin/bash
# Corrupt and hostile VMDK images (tests/lib/vmdkevil.py, patched copies of
# images qemu-img made): truncated files, grain directory and grain table
# pointers outside the file or onto metadata, huge capacities, bad magic,
# version and flags, descriptor garbage and hostile extent names, bad
# compressed grains (garbage, a zlib bomb, short data, bad markers).
# Each is refused by `tapdisk serve` with one clear line and a non-zero
# exit, or, for a problem in one grain, answered with EIO (reads and
# writes) while the process keeps serving the rest. No image file ever
# changes or grows. Then: a primary GTE that is garbage with a valid
# redundant copy reads through the redundant one, and a writable open
# repairs the primary (qemu-img check clean afterwards).
. "$TD_SRC/tests/lib/common.sh"
need python3 qemu-img qemu-io sha256sum

D=$T/evil
SOCK=$T/e.sock
URI=$(uri_of "$SOCK")
qemu-img create -q -f vmdk "$T/base.vmdk" 64M
qemu-io -f vmdk -c "write -P 0xab 0 64k" -c "write -P 0xcd 1M 64k" "$T/base.vmdk" >/dev/null ||
	fail "qemu-io base"
qemu-img convert -f vmdk -O raw "$T/base.vmdk" "$T/base.raw"
head -c 64k /dev/urandom | dd of="$T/base.raw" bs=64k seek=16 conv=notrunc status=none
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/base.raw" "$T/stream.vmdk"
python3 "$TD_SRC/tests/lib/vmdkevil.py" "$D" "$T/base.vmdk" "$T/stream.vmdk" >"$T/manifest" ||
	fail "generator"
state() { (cd "$D" && find . -type f -printf '%s %p\n' | sort && find . -type f -exec sha256sum {} + | sort); }
before=$(state)

good_read() { # the first grain still reads back
	local out
	out=$(qemu-io -r -f raw -c "read -P 0xab 0 64k" "$URI" 2>&1)
	echo "$out" | grep -q "^read " && ! echo "$out" | grep -qi "verification failed" ||
		fail "$1: the good grain does not read back: $out"
}

refused=0 ioerr=0
while IFS='|' read -r name mode expect img; do
	case $mode in
	refuse)
		out=$(timeout 20 tapdisk serve "vmdk:$img" --socket "$SOCK" 2>&1 </dev/null)
		rc=$?
		[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$name: exit status $rc: $out"
		[ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] || fail "$name: not one line: $out"
		echo "$out" | grep -qF -- "$expect" || fail "$name: message lacks '$expect': $out"
		[ -S "$SOCK" ] && fail "$name: socket left behind"
		echo "   $name: ${out#*error: }"
		refused=$((refused + 1))
		;;
	ioerror | roerror)
		if [ "$mode" = roerror ]; then
			td_serve "vmdk:$img" "$SOCK" --readonly
		else
			td_serve "vmdk:$img" "$SOCK"
		fi
		out=$(qemu-io -r -f raw -c "read $expect 64k" "$URI" 2>&1)
		echo "$out" | grep -qi "input/output error" || fail "$name: read: expected EIO, got: $out"
		if [ "$mode" = ioerror ]; then
			out=$(qemu-io -f raw -c "write -P 0x99 $expect 4k" "$URI" 2>&1)
			echo "$out" | grep -qi "input/output error" ||
				fail "$name: write: expected EIO, got: $out"
		fi
		good_read "$name"
		kill -0 "$TD_PID" 2>/dev/null || fail "$name: tapdisk died"
		td_stop "$TD_PID" || fail "$name: exit status"
		echo "   $name: EIO at guest offset $expect, still serving"
		ioerr=$((ioerr + 1))
		;;
	fallback)
		td_serve "vmdk:$img" "$SOCK" --readonly
		out=$(qemu-io -r -f raw -c "read -P 0xcd $expect 64k" "$URI" 2>&1)
		echo "$out" | grep -q "^read " && ! echo "$out" | grep -qi "verification failed" ||
			fail "$name: the redundant grain table was not used: $out"
		td_stop "$TD_PID" || fail "$name: exit status"
		echo "   $name: read through the redundant grain table"
		fallback_img=$img
		;;
	rdonly)
		td_serve "vmdk:$img" "$SOCK"
		out=$(qemu-io -r -f raw -c "read -P 0xcd $expect 64k" "$URI" 2>&1)
		echo "$out" | grep -q "^read " && ! echo "$out" | grep -qi "verification failed" ||
			fail "$name: the redundant grain table was not used: $out"
		out=$(qemu-io -f raw -c "write -P 0x99 $expect 4k" "$URI" 2>&1)
		echo "$out" | grep -qi "input/output error" || fail "$name: write: expected EIO: $out"
		# and nothing tries to repair the read-only extent: flushes work
		out=$(qemu-io -f raw -c "write -P 0x98 0 4k" "$URI" 2>&1)
		echo "$out" | grep -qi "input/output error" || fail "$name: write: expected EIO: $out"
		qemu-io -f raw -c flush "$URI" >/dev/null 2>&1 || fail "$name: a flush failed"
		td_stop "$TD_PID" || fail "$name: exit status"
		echo "   $name: RDONLY extent read through the redundant table, write refused"
		;;
	none) ;;
	*) fail "manifest: $name|$mode" ;;
	esac
done <"$T/manifest"
grep -q "vmdk: '.*compressed grain" "$TAPDISK_RUNDIR/tapdisk.log" ||
	fail "the bad compressed grains were not logged"
grep -q "vmdk: '.*grain table entry" "$TAPDISK_RUNDIR/tapdisk.log" ||
	fail "the bad grain table entries were not logged"
[ "$(state)" = "$before" ] || fail "an image file changed"
[ $refused -ge 30 ] && [ $ioerr -ge 10 ] || fail "too few cases ($refused, $ioerr)"
echo "$refused images refused, $ioerr per-grain errors answered with EIO; no file changed"

info "a writable open repairs a primary GTE from the redundant copy"
cp "$fallback_img" "$T/repair.vmdk"
qemu-img check -f vmdk "$T/repair.vmdk" >/dev/null 2>&1 && fail "qemu-img finds nothing wrong before"
td_serve "vmdk:$T/repair.vmdk" "$SOCK"
qemu-io -f raw -c "read -P 0xcd 1M 64k" -c "write -P 0xee 2M 4k" -c flush "$URI" | grep -qi fail &&
	fail "read/write on the image being repaired"
td_stop "$TD_PID" || fail "exit status (repair)"
out=$(qemu-img check -f vmdk "$T/repair.vmdk" 2>&1) || fail "qemu-img check after repair: $out"
qemu-io -r -f vmdk -c "read -P 0xcd 1M 64k" -c "read -P 0xee 2M 4k" "$T/repair.vmdk" |
	grep -qi fail && fail "QEMU reads other data after the repair"
grep -q "differ from the redundant copy" "$TAPDISK_RUNDIR/tapdisk.log" ||
	fail "the disagreement was not logged"
info "ok"
