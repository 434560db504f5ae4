#!/bin/bash
# Live snapshot of a VHD (tap-ctl snapshot) and differencing disks:
#  - under a running fio verify workload: no client error, data from
#    before and after the snapshot point verifies, the parent never
#    changes after the snapshot, the VBD now serves the differencing child;
#  - the child is a differencing VHD over the parent for libvhdi (vhdiinfo:
#    type, parent identifier and file name) and QEMU reads the child's own
#    blocks where we wrote after the snapshot (qemu-io -f vpc on the child:
#    the BAT entries and data are where the format says);
#  - the whole disk through us = QEMU's reading of the parent with the
#    post-snapshot writes applied to it (partial blocks read the rest from
#    the parent);
#  - the child opens alone later (parent found through its locators), a
#    second snapshot makes a chain of three, and the chain still opens after
#    its directory is moved (the relative W2ru locator);
#  - crypt:vhd: the same under crypt (the key and the integrity metadata
#    carry over; the child opens later with its own vdkey load).
# (libvhdi 20210425's vhdimount reads a differencing disk's data from its
# parent only, even where the child's bitmap is all ones, so it cannot be
# the whole-disk reference here; docs/FORMAT-vhd.md.)
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io fio nbdcopy vhdiinfo python3 sha256sum

D=$T/vms
mkdir -p "$D"
BASE=$D/base.vhd
SNAP=$D/snap.vhd
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$BASE" 64M
qemu-io -f vpc -c "write -P 0x11 0 3M" -c "write -P 0x22 10M 1M" -c "write -P 0x23 20M 2M" \
	"$BASE" >/dev/null || fail "qemu-io base"
URI=$(tap-ctl create -a "vhd:$BASE") || fail create
SOCK=${URI#nbd+unix:///?socket=}
qemu-io -f raw -c "write -P 0x33 1M 4k" "$URI" >/dev/null || fail "pre-snapshot write"

# fio over [40M, 56M) across the snapshot point
fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --offset=40M \
	--size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 \
	--time_based --runtime=6 --verify_backlog=256 --output="$T/fio.txt" &
F=$!
sleep 2
tap-ctl snapshot -s "$SOCK" "$SNAP" || fail "snapshot"
sum1=$(sha256sum <"$BASE")
tap-ctl list | grep -q "vhd:$SNAP" || fail "not serving the child: $(tap-ctl list)"
wait $F || { cat "$T/fio.txt"; fail "fio error across the snapshot"; }
grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio errors"; }
post=(-c "write -P 0x66 12k 4k" -c "write -P 0x44 2M 8k" -c "write -P 0x55 20M 4k"
	-c "write -P 0x77 30M 2M" -c "write -P 0x88 4190208 8k")
qemu-io -f raw "${post[@]}" "$URI" >/dev/null || fail "post-snapshot writes"
nbdcopy "$URI" "$T/ours.raw" || fail "nbdcopy"
tap-ctl destroy -s "$SOCK" || fail destroy
[ "$(sha256sum <"$BASE")" = "$sum1" ] || fail "the parent changed after the snapshot"

out=$(vhdiinfo "$SNAP" 2>&1) || fail "vhdiinfo: $out"
echo "$out" | grep -q "Disk type.*Differential" || fail "vhdiinfo type: $out"
echo "$out" | grep -q "Parent filename.*base.vhd" || fail "vhdiinfo parent name: $out"
pid=$(vhdiinfo "$BASE" | awk '/Identifier/ {print $3}')
echo "$out" | grep -q "Parent identifier.*$pid" || fail "vhdiinfo parent identifier: $out"
# QEMU reads the child's own blocks (its vpc driver ignores the parent)
qemu-io -f vpc -r -c "read -P 0x66 12k 4k" -c "read -P 0x44 2M 8k" -c "read -P 0x55 20M 4k" \
	-c "read -P 0x77 30M 2M" -c "read -P 0x88 4190208 8k" "$SNAP" 2>&1 |
	grep -qi "verification failed" && fail "QEMU does not find our writes in the child"
# the whole disk: the parent (as QEMU reads it) with the post-snapshot
# writes, outside fio's range
qemu-img convert -f vpc -O raw "$BASE" "$T/expect.raw"
qemu-io -f raw "${post[@]}" "$T/expect.raw" >/dev/null
python3 - "$T/ours.raw" "$T/expect.raw" <<'EOF' || fail "our export differs from parent + writes"
import sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
lo, hi = 40 << 20, 56 << 20
assert len(a) == len(b) == 64 << 20, (len(a), len(b))
for i in range(0, len(a), 4096):
    if lo <= i < hi:
        continue
    if a[i:i + 4096] != b[i:i + 4096]:
        sys.exit("first difference at %d" % i)
EOF

info "the child opens alone; a second snapshot makes a chain of three"
td_serve "vhd:$SNAP" "$T/s.sock" --readonly
nbdcopy "$(uri_of "$T/s.sock")" "$T/again.raw" || fail "nbdcopy (reopen)"
td_stop "$TD_PID" || fail "exit status (reopen)"
cmp "$T/again.raw" "$T/ours.raw" || fail "the child reopened reads differently"
URI=$(tap-ctl create -a "vhd:$SNAP") || fail "create on the child"
SOCK=${URI#nbd+unix:///?socket=}
tap-ctl snapshot -s "$SOCK" "$D/snap2.vhd" || fail "second snapshot"
qemu-io -f raw -c "write -P 0x99 5M 4k" -c "read -P 0x66 12k 4k" -c "read -P 0x11 16k 4k" \
	-c "read -P 0x99 5M 4k" "$URI" 2>&1 | grep -qi "verification failed" &&
	fail "reads through a chain of three"
nbdcopy "$URI" "$T/three.raw" || fail "nbdcopy (three)"
tap-ctl destroy -s "$SOCK" || fail "destroy (three)"
qemu-io -f raw -c "write -P 0x99 5M 4k" "$T/ours.raw" >/dev/null
python3 - "$T/three.raw" "$T/ours.raw" <<'EOF' || fail "a chain of three reads differently"
import sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
lo, hi = 40 << 20, 56 << 20
assert a[:lo] == b[:lo] and a[hi:] == b[hi:]
EOF
mv "$D" "$T/moved"
td_serve "vhd:$T/moved/snap2.vhd" "$T/s.sock" --readonly
nbdcopy "$(uri_of "$T/s.sock")" "$T/moved.raw" || fail "nbdcopy (moved)"
td_stop "$TD_PID" || fail "exit status (moved)"
cmp "$T/moved.raw" "$T/three.raw" || fail "the moved chain reads differently"

info "crypt:vhd: a live snapshot under crypt keeps the key and the integrity metadata"
KEY=$T/key
printf 'vhd snapshot test passphrase' >"$KEY"
C=$T/c
mkdir -p "$C"
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$C/base.vhd" 96M
crypt_image "vhd:$C/base.vhd" "$KEY"
URI=$(tap-ctl create -a "crypt:vhd:$C/base.vhd") || fail "create crypt:vhd"
SOCK=${URI#nbd+unix:///?socket=}
qemu-io -f raw -c "write -P 0x4b 10M 2M" "$URI" >/dev/null || fail "crypt pre-snapshot write"
tap-ctl snapshot -s "$SOCK" "$C/snap.vhd" || fail "crypt snapshot"
qemu-io -f raw -c "write -P 0x4c 20M 1M" -c "read -P 0x4b 10M 2M" -c "read -P 0x4c 20M 1M" \
	"$URI" 2>&1 | grep -qi "verification failed\|error" && fail "crypt:vhd across the snapshot"
tap-ctl destroy -s "$SOCK" || fail "destroy (crypt)"
vdkey load "vhd:$C/snap.vhd" --key-file "$KEY" >/dev/null || fail "load the child's key"
td_on_exit "vdkey unload vhd:$C/snap.vhd >/dev/null 2>&1"
URI=$(tap-ctl create -a "crypt:vhd:$C/snap.vhd") || fail "reopen the crypt child"
qemu-io -f raw -c "read -P 0x4b 10M 2M" -c "read -P 0x4c 20M 1M" "$URI" 2>&1 |
	grep -qi "verification failed\|error" && fail "crypt:vhd child reopened"
tap-ctl destroy -s "${URI#nbd+unix:///?socket=}" || fail "destroy (crypt child)"
out=$(tap-ctl snapshot -m 99 "$T/x.vhd" 2>&1) && fail "snapshot of nothing"
echo ok
