#!/bin/bash
# Live snapshot of crypt:qcow2 under a running fio verify workload: no
# client error, data from before and after the snapshot point verifies,
# the old image never changes after the snapshot, the overlay is a valid
# qcow2 over it, and the same key and integrity cover it.
. "$TD_SRC/tests/lib/common.sh"
need qemu-img fio keyctl
tapdisk drivers | grep -q '^qcow2' || skip "no qcow2 driver in this build"
IMG=$T/base.qcow2
SNAP=$T/snap.qcow2
KEY=$T/key
printf 'snapshot test passphrase' >"$KEY"
qemu-img create -q -f qcow2 "$IMG" 256M
vdkey format "qcow2:$IMG" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null || fail format
vdkey load "qcow2:$IMG" --key-file "$KEY" >/dev/null || fail load
td_on_exit "vdkey unload qcow2:$IMG >/dev/null 2>&1"
URI=$(tap-ctl create -a "crypt:qcow2:$IMG") || fail create
SOCK=${URI#nbd+unix:///?socket=}
# data from before the snapshot point, outside fio's range
qemu-io -f raw -c "write -P 0x4b 100M 2M" "$URI" >/dev/null || fail "pre-snapshot write"

fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --size=64M \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --time_based \
	--runtime=8 --verify_backlog=256 --output="$T/fio.txt" &
F=$!
sleep 3
tap-ctl snapshot -s "$SOCK" "$SNAP" || fail "snapshot"
sum1=$(sha256sum <"$IMG")
tap-ctl list | grep -q "crypt:qcow2:$SNAP" || fail "not serving the overlay: $(tap-ctl list)"
wait $F || { cat "$T/fio.txt"; fail "fio error across the snapshot"; }
grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio errors"; }
# fio's verify backlog re-read blocks written before the snapshot through the
# overlay; and explicitly: old data through the overlay, new data in it
qemu-io -f raw -c "read -P 0x4b 100M 2M" "$URI" | grep -q "read 2097152" || fail "pre-snapshot data"
qemu-io -f raw -c "write -P 0x4c 110M 1M" -c "read -P 0x4c 110M 1M" "$URI" | grep -q "read 1048576" ||
	fail "post-snapshot write"
st=$(tap-ctl stats -s "$SOCK" --json)
echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["errors"]==0 and s["integrity_failures"]==0, s' ||
	fail "errors: $st"
tap-ctl destroy -s "$SOCK" || fail destroy
sum2=$(sha256sum <"$IMG")
[ "$sum1" = "$sum2" ] || fail "the old image changed after the snapshot"
qemu-img check -q "$SNAP" || fail "overlay fails qemu-img check"
qemu-img check -q "$IMG" || fail "base fails qemu-img check"
qemu-img info "$SNAP" | grep -q "backing file: $IMG" || fail "backing file: $(qemu-img info "$SNAP")"
# the overlay opens alone later, with the same key and its MACs verifying;
# a loaded key opens only the file it was loaded for, so it is loaded for the
# overlay first (SECURITY.md, "A loaded key opens only its own image")
out=$(tap-ctl create -a "crypt:qcow2:$SNAP" 2>&1) && fail "the base's key opened the overlay"
echo "$out" | grep -q "belongs to another file" || fail "message: $out"
vdkey load "qcow2:$SNAP" --key-file "$KEY" >/dev/null || fail "load the overlay's key"
td_on_exit "vdkey unload qcow2:$SNAP >/dev/null 2>&1"
URI=$(tap-ctl create -a "crypt:qcow2:$SNAP") || fail "reopen overlay"
nbdcopy "$URI" /dev/null || fail "whole-disk read of the overlay"
tap-ctl destroy -s "${URI#nbd+unix:///?socket=}"
out=$(tap-ctl snapshot -m 99 "$T/x.qcow2" 2>&1) && fail "snapshot of nothing"
echo ok
