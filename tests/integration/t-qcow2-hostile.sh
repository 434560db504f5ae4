#!/bin/bash
# Corrupt and hostile qcow2 images (tests/lib/qcow2evil.py): each is
# refused by `tapdisk serve` with one clear line and a non-zero exit, or,
# for a problem in one cluster, answered with an I/O error while the
# process keeps serving. No image file ever changes or grows.
. "$TD_SRC/tests/lib/common.sh"
need python3 qemu-io sha256sum

D=$T/evil
SOCK=$T/e.sock
URI=$(uri_of "$SOCK")
python3 "$TD_SRC/tests/lib/qcow2evil.py" "$D" >"$T/manifest" || fail "generator"
state() { (cd "$D" && find . -type f -printf '%s %p\n' | sort && find . -type f -exec sha256sum {} + | sort); }
before=$(state)

refused=0 ioerr=0
while IFS='|' read -r name mode expect img; do
	case $mode in
	refuse | readonly)
		out=$(timeout 20 tapdisk serve "qcow2:$img" --socket "$SOCK" 2>&1 </dev/null)
		rc=$?
		[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$name: exit status $rc: $out"
		[ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] || fail "$name: not one line: $out"
		echo "$out" | grep -qF -- "$expect" || fail "$name: message lacks '$expect': $out"
		[ -S "$SOCK" ] && fail "$name: socket left behind"
		echo "   $name: ${out#*error: }"
		refused=$((refused + 1))
		if [ "$mode" = readonly ]; then
			td_serve "qcow2:$img" "$SOCK" --readonly
			qemu-io -r -f raw -c "read -P 0xab 0 64k" "$URI" 2>&1 | grep -q "^read " ||
				fail "$name: read-only serving failed"
			td_stop "$TD_PID" || fail "$name: exit status"
		fi
		;;
	ioerror | rwerror)
		td_serve "qcow2:$img" "$SOCK"
		if [ "$mode" = ioerror ]; then
			out=$(qemu-io -f raw -c "read $expect 64k" "$URI" 2>&1)
		else
			out=$(qemu-io -f raw -c "write -P 0x99 $expect 4k" "$URI" 2>&1)
		fi
		echo "$out" | grep -qi "input/output error" || fail "$name: expected EIO, got: $out"
		out=$(qemu-io -f raw -c "read -P 0xab 0 64k" "$URI" 2>&1)
		echo "$out" | grep -q "^read " && ! echo "$out" | grep -qi "verification failed" ||
			fail "$name: the good cluster does not read back: $out"
		kill -0 "$TD_PID" 2>/dev/null || fail "$name: tapdisk died"
		td_stop "$TD_PID" || fail "$name: exit status"
		echo "   $name: EIO at guest offset $expect, still serving"
		ioerr=$((ioerr + 1))
		;;
	*) fail "manifest: $name|$mode" ;;
	esac
done <"$T/manifest"
grep -q "qcow2:" "$TAPDISK_RUNDIR/tapdisk.log" || fail "per-cluster errors were not logged"
grep "qcow2: '.*compressed cluster" "$TAPDISK_RUNDIR/tapdisk.log" >/dev/null ||
	fail "the compressed cluster was not logged"
[ "$(state)" = "$before" ] || fail "an image file changed"
[ $refused -ge 12 ] && [ $ioerr -ge 4 ] || fail "too few cases ($refused, $ioerr)"
echo "$refused images refused, $ioerr per-cluster errors answered with EIO; no file changed"
