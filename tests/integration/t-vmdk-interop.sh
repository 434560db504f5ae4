#!/bin/bash
# vmdk interoperability with QEMU and libvmdk, both directions:
#  1. QEMU writes (qemu-img convert of a patterned raw image to
#     monolithicSparse, to streamOptimized, and qemu-io writes with zeroed
#     grains), we read it back over NBD identically (nbdcopy, qemu-io
#     read -P, the size nbdinfo reports). A streamOptimized image laid out
#     as VMware streams it (tests/lib/vmdkstream.py: grain directory at
#     the end, found through the footer), which libvmdk must first read
#     identically, reads identically through us too.
#  2. We write (nbdcopy of random data, qemu-io patterns: partial grains,
#     grain-crossing writes, write-zeroes, into fresh and QEMU-filled
#     images): qemu-img check is clean, qemu-img compare equals the raw
#     reference written the same way, and libvmdk (vmdkinfo, and vmdkmount
#     through FUSE) reads the same bytes.
#  3. streamOptimized is read-only: a writable open is refused, naming the
#     way out.
#  4. Descriptor files: monolithicFlat and twoGbMaxExtentSparse made by
#     qemu-img, read and written through us, checked by QEMU; an extent
#     named outside the descriptor's directory is refused (confinement).
#  5. crypt:vmdk: works like crypt:qcow2: (vdkey format/load, data written
#     through crypt reads back after a restart, the image stays a valid
#     VMDK for qemu-img check, and no plaintext lands in it).
#  6. tap-ctl pause/unpause (quiesce: the last grain table writeback, the
#     sparse tail cut; reopen) 10 times under fio random allocating writes
#     with verify: no client error, qemu-img check clean afterwards.
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io nbdcopy nbdinfo vmdkinfo cmp python3

SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")

# a 64 MiB raw image: patterned runs at odd places, holes, random data
python3 - "$T/src.raw" <<'EOF'
import os, sys
with open(sys.argv[1], 'wb') as f:
    f.truncate(64 << 20)
    for i, off in enumerate([0, 3 * 65536 + 4096, 1 << 20, 5 << 20, (33 << 20) + 512 * 9]):
        f.seek(off)
        f.write(bytes((i * 37 + j) % 251 for j in range(300000)))
    f.seek(63 << 20)
    f.write(os.urandom(1 << 20))
EOF

nbd_expect() { # "OFFSET LEN BYTE" ...
	local spec out
	for spec in "$@"; do
		set -- $spec
		out=$(qemu-io -r -f raw -c "read -P $3 $1 $2" "$URI" 2>&1)
		echo "$out" | grep -q "^read " && ! echo "$out" | grep -qi "verification failed" ||
			fail "read -P $3 $1 $2 over NBD: $out"
	done
}

check_clean() {
	local out
	out=$(qemu-img check -f vmdk "$1" 2>&1) || fail "qemu-img check $1: $out"
	echo "$out" | grep -q "No errors were found" || fail "qemu-img check $1: $out"
}

# libvmdk reads IMG as REF: vmdkinfo accepts it, vmdkmount's view is REF
libvmdk_matches() {
	local img=$1 ref=$2 mnt=$T/mnt
	vmdkinfo "$img" >"$T/vmdkinfo.out" 2>&1 || fail "vmdkinfo $img: $(cat "$T/vmdkinfo.out")"
	if [ ! -e /dev/fuse ] || ! command -v vmdkmount >/dev/null; then
		echo "(no FUSE or vmdkmount: vmdkinfo only)"
		return
	fi
	mkdir -p "$mnt"
	vmdkmount "$img" "$mnt" >/dev/null 2>&1 || fail "vmdkmount $img"
	td_on_exit "umount '$mnt' 2>/dev/null"
	cmp "$mnt/vmdk1" "$ref" || { umount "$mnt"; fail "vmdkmount of $img differs from $ref"; }
	umount "$mnt" || fail "umount $mnt"
}

info "1. QEMU writes, we read: monolithicSparse and streamOptimized from qemu-img convert"
qemu-img convert -f raw -O vmdk "$T/src.raw" "$T/sparse.vmdk" || fail "convert sparse"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/src.raw" "$T/stream.vmdk" ||
	fail "convert streamOptimized"
for img in sparse stream; do
	td_serve "vmdk:$T/$img.vmdk" "$SOCK" --readonly
	size=$(nbdinfo --size "$URI") || fail "nbdinfo ($img)"
	[ "$size" = 67108864 ] || fail "$img: nbdinfo size $size, expected 67108864"
	nbdcopy "$URI" "$T/out.raw" || fail "nbdcopy from our server ($img)"
	nbd_expect "2M 1M 0" "40M 4M 0"
	td_stop "$TD_PID" || fail "exit status ($img)"
	cmp "$T/out.raw" "$T/src.raw" || fail "$img: what we serve differs from the raw source"
	rm -f "$T/out.raw"
done

info "1b. QEMU writes with zeroed grains (version 2 GTEs of 1), we read"
qemu-img create -q -f vmdk -o zeroed_grain=on "$T/zg.vmdk" 32M
qemu-io -f vmdk -c "write -P 0x11 0 192k" -c "write -z 64k 64k" -c "write -P 0x22 1M 4k" \
	-c "write -P 0x33 3149824 12k" -c "write -P 0x44 10M 3M" -c "write -z 11M 512k" \
	"$T/zg.vmdk" >/dev/null || fail "qemu-io fill"
td_serve "vmdk:$T/zg.vmdk" "$SOCK"
nbd_expect "0 64k 0x11" "64k 64k 0" "128k 64k 0x11" "1M 4k 0x22" "3149824 12k 0x33" \
	"10M 1M 0x44" "11M 512k 0" "12058624 1536k 0x44" "20M 1M 0"
td_stop "$TD_PID" || fail "exit status (zeroed grains)"
check_clean "$T/zg.vmdk"

info "1c. streamOptimized as VMware streams it (GD at the end, footer), checked by libvmdk first"
python3 "$TD_SRC/tests/lib/vmdkstream.py" "$T/src.raw" "$T/vmw.vmdk" || fail "vmdkstream.py"
libvmdk_matches "$T/vmw.vmdk" "$T/src.raw"
grep -q "Stream optimized" "$T/vmdkinfo.out" || fail "vmdkinfo: not stream optimized: $(cat "$T/vmdkinfo.out")"
td_serve "vmdk:$T/vmw.vmdk" "$SOCK" --readonly
nbdcopy "$URI" "$T/out.raw" || fail "nbdcopy (VMware layout)"
td_stop "$TD_PID" || fail "exit status (VMware layout)"
cmp "$T/out.raw" "$T/src.raw" || fail "VMware-layout streamOptimized: what we serve differs"
rm -f "$T/out.raw"

info "2. We write, QEMU and libvmdk read: a fresh image"
qemu-img create -q -f vmdk "$T/w.vmdk" 64M
cp "$T/src.raw" "$T/ref.raw"
head -c 8M /dev/urandom >"$T/rand8"
dd if="$T/rand8" of="$T/ref.raw" bs=1M seek=20 conv=notrunc status=none
td_serve "vmdk:$T/w.vmdk" "$SOCK"
nbdcopy "$T/ref.raw" "$URI" || fail "nbdcopy to our server"
PATTERNS=(-c "write -P 0x5a 8k 4k" -c "write -P 0x6b 10M 100k" -c "write -P 0x7c 4186112 8k"
	-c "write -z 5M 64k" -c "write -P 0x8d 48M 4k" -c "write -P 0x9e 62M 68k")
qemu-io -f raw "${PATTERNS[@]}" -c flush "$URI" >/dev/null || fail "qemu-io patterns over NBD"
td_stop "$TD_PID" || fail "exit status (writes)"
qemu-io -f raw "${PATTERNS[@]}" "$T/ref.raw" >/dev/null || fail "qemu-io patterns on raw"
qemu-img compare -q -f vmdk -F raw "$T/w.vmdk" "$T/ref.raw" ||
	fail "qemu-img compare: our writes differ from the raw reference"
check_clean "$T/w.vmdk"
libvmdk_matches "$T/w.vmdk" "$T/ref.raw"

info "2b. We write into a QEMU-filled image (in place and new grains), again"
# (converted, not copied: libvmdk follows the file name the embedded descriptor holds)
qemu-img convert -f raw -O vmdk "$T/src.raw" "$T/w2.vmdk" || fail "convert w2"
cp "$T/src.raw" "$T/ref2.raw"
PAT2=(-c "write -P 0xa1 4k 4k" -c "write -P 0xa2 196k 100k" -c "write -P 0xa3 30M 1M"
	-c "write -z 1M 256k" -c "write -P 0xa4 63M 4k" -c "write -P 0xa5 40M 64k"
	-c "write -z 4M 40M" -c "write -P 0xa6 20M 8k")
td_serve "vmdk:$T/w2.vmdk" "$SOCK"
qemu-io -f raw "${PAT2[@]}" "$URI" >/dev/null || fail "qemu-io over NBD (2b)"
td_stop "$TD_PID" || fail "exit status (2b)"
qemu-io -f raw "${PAT2[@]}" "$T/ref2.raw" >/dev/null
qemu-img compare -q -f vmdk -F raw "$T/w2.vmdk" "$T/ref2.raw" ||
	fail "qemu-img compare (2b): our writes differ"
check_clean "$T/w2.vmdk"
libvmdk_matches "$T/w2.vmdk" "$T/ref2.raw"

info "3. streamOptimized: a writable open is refused with the way out"
out=$(tapdisk serve "vmdk:$T/stream.vmdk" --socket "$T/x.sock" 2>&1) &&
	fail "a writable open of streamOptimized succeeded"
echo "$out" | grep -q "streamOptimized VMDK is read-only here" ||
	fail "no clear message for a writable streamOptimized open: $out"

info "4. Descriptor files: monolithicFlat and twoGbMaxExtentSparse"
for sub in monolithicFlat twoGbMaxExtentSparse; do
	d=$T/$sub
	mkdir -p "$d"
	qemu-img convert -q -f raw -O vmdk -o subformat=$sub "$T/src.raw" "$d/disk.vmdk" ||
		fail "convert $sub"
	cp "$T/src.raw" "$d/ref.raw"
	td_serve "vmdk:$d/disk.vmdk" "$SOCK"
	nbdcopy "$URI" "$d/out.raw" || fail "nbdcopy ($sub)"
	cmp "$d/out.raw" "$T/src.raw" || fail "$sub: what we serve differs from the raw source"
	qemu-io -f raw "${PAT2[@]}" "$URI" >/dev/null || fail "qemu-io over NBD ($sub)"
	td_stop "$TD_PID" || fail "exit status ($sub)"
	qemu-io -f raw "${PAT2[@]}" "$d/ref.raw" >/dev/null
	qemu-img compare -q -f vmdk -F raw "$d/disk.vmdk" "$d/ref.raw" ||
		fail "qemu-img compare ($sub): our writes differ"
	check_clean "$d/disk.vmdk"
done
# an extent outside the descriptor's directory: refused by the confinement
mkdir -p "$T/elsewhere" "$T/desc"
cp "$T/monolithicFlat/disk-flat.vmdk" "$T/elsewhere/disk-flat.vmdk"
sed "s|\"disk-flat.vmdk\"|\"../elsewhere/disk-flat.vmdk\"|" "$T/monolithicFlat/disk.vmdk" \
	>"$T/desc/disk.vmdk"
grep -q elsewhere "$T/desc/disk.vmdk" || fail "could not rewrite the descriptor"
out=$(tapdisk serve "vmdk:$T/desc/disk.vmdk" --socket "$T/x.sock" 2>&1) &&
	fail "an extent outside the descriptor's directory was opened"
echo "$out" | grep -q "extent 0" || fail "no clear message for an extent outside: $out"
# ... unless the VBD allows that directory (extent-dir=)
td_serve "vmdk,extent-dir=$T/elsewhere:$T/desc/disk.vmdk" "$SOCK" --readonly
nbdcopy "$URI" "$T/out.raw" || fail "nbdcopy (extent-dir)"
td_stop "$TD_PID" || fail "exit status (extent-dir)"
cmp "$T/out.raw" "$T/monolithicFlat/ref.raw" || fail "extent-dir: wrong data"
rm -f "$T/out.raw"
# backing-dir= (what the refusal advises) is the same
td_serve "vmdk,backing-dir=$T/elsewhere:$T/desc/disk.vmdk" "$SOCK" --readonly
nbdcopy "$URI" "$T/out.raw" || fail "nbdcopy (extent-dir)"
td_stop "$TD_PID" || fail "exit status (extent-dir)"
cmp "$T/out.raw" "$T/monolithicFlat/ref.raw" || fail "extent-dir: wrong data"
rm -f "$T/out.raw"

info "5. crypt:vmdk: like crypt:qcow2:"
qemu-img create -q -f vmdk "$T/c.vmdk" 64M
echo "vmdk test passphrase" >"$T/key"
crypt_image "vmdk:$T/c.vmdk" "$T/key"
td_serve "crypt:vmdk:$T/c.vmdk" "$SOCK"
csize=$(nbdinfo --size "$URI") || fail "nbdinfo (crypt)"
[ "$csize" -gt $((8 << 20)) ] || fail "crypt:vmdk exports only $csize bytes"
head -c 4M /dev/zero | tr '\0' 'P' >"$T/plain4"
qemu-io -f raw -c "write -s $T/plain4 0 4M" -c "write -P 0x3c 9M 68k" -c flush "$URI" \
	>/dev/null || fail "write through crypt:vmdk"
td_stop "$TD_PID" || fail "exit status (crypt)"
check_clean "$T/c.vmdk"
qemu-img convert -f vmdk -O raw "$T/c.vmdk" "$T/c.raw"
if grep -q PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP "$T/c.raw"; then
	fail "plaintext found in the vmdk image under crypt"
fi
td_serve "crypt:vmdk:$T/c.vmdk" "$SOCK"
nbdcopy "$URI" "$T/c-out.raw" || fail "nbdcopy (crypt, restarted)"
td_stop "$TD_PID" || fail "exit status (crypt, restarted)"
cmp -n 4194304 "$T/c-out.raw" "$T/plain4" || fail "crypt:vmdk: data differs after a restart"
qemu-io -f raw -c "read -P 0x3c 9M 68k" -c "read -P 0 12M 1M" "$T/c-out.raw" | grep -qi "failed" &&
	fail "crypt:vmdk: pattern differs after a restart"

info "6. pause/unpause under fio verify (allocating writes)"
need fio
qemu-img create -q -f vmdk "$T/p.vmdk" 256M
URI6=$(tap-ctl create -a "vmdk:$T/p.vmdk") || fail "tap-ctl create"
SOCK6=${URI6#nbd+unix:///?socket=}
fio --name=v --ioengine=nbd --uri="$URI6" --rw=randwrite --bsrange=4k-64k --iodepth=16 \
	--size=200M --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 \
	--time_based --runtime=8 --verify_backlog=256 --output="$T/fio6.txt" &
F=$!
sleep 1
for i in $(seq 1 10); do
	tap-ctl pause -s "$SOCK6" || fail "pause $i"
	sleep 0.1
	tap-ctl unpause -s "$SOCK6" || fail "unpause $i"
	sleep 0.3
done
wait $F || { cat "$T/fio6.txt"; fail "fio reported an error"; }
grep -q "err= 0" "$T/fio6.txt" || { cat "$T/fio6.txt"; fail "fio errors"; }
tap-ctl destroy -s "$SOCK6" || fail "tap-ctl destroy"
check_clean "$T/p.vmdk"

info "ok"
