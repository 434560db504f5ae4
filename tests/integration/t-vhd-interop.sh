#!/bin/bash
# test: long — started first, so the parallel run does not end waiting for it
# VHD interoperability with QEMU (vpc driver) and libvhdi, both directions:
#  1. QEMU writes: qemu-img convert -O vpc (dynamic and fixed, exact and
#     CHS-rounded sizes) and qemu-io writes into a dynamic disk; our
#     export (nbdcopy, qemu-io pattern reads, nbdinfo's size) is the raw
#     source.
#  2. We write (nbdcopy, qemu-io patterns, write-zeroes, fio crc32c verify)
#     into dynamic and fixed disks QEMU created: qemu-img compare -f vpc
#     against the reference is identical, libvhdi's vhdimount reads the
#     same bytes and vhdiinfo the same size, and after QEMU writes more
#     into it (new blocks after ours too) a fresh process of ours reads it
#     all back; the file is cut after its last block at a clean stop.
#  3. crypt:vhd: works as crypt:qcow2: (vdkey format/load, round trip
#     through a fresh process, no plaintext in the file, QEMU and libvhdi
#     agree on the ciphertext layout).
# (qemu-img check does not support vpc: compare is the whole-disk check.)
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io nbdcopy nbdinfo fio vhdiinfo vhdimount cmp python3

SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")
MNT=$T/mnt
mkdir -p "$MNT"
td_on_exit "umount '$MNT' 2>/dev/null"

# a 64 MiB raw source: a distinct byte per 4 KiB block, every fifth block zero
python3 - "$T/src.raw" <<'EOF'
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(64 * 256):
        f.write(bytes([(i * 7 + 1) % 251 + 1]) * 4096 if i % 5 else b"\0" * 4096)
EOF

nbd_expect() {
	local spec out
	for spec in "$@"; do
		set -- $spec
		out=$(qemu-io -f raw -c "read -P $3 $1 $2" "$URI" 2>&1)
		echo "$out" | grep -q "^read " && ! echo "$out" | grep -qi "verification failed" ||
			fail "read -P $3 $1 $2 over NBD: $out"
	done
}

# export_is FILE LEN: our export is LEN bytes, FILE then zeros
export_is() {
	local size
	size=$(nbdinfo --size "$URI") || fail "nbdinfo"
	[ "$size" = "$2" ] || fail "export size $size, expected $2"
	nbdcopy "$URI" "$T/export.raw" || fail "nbdcopy from our server"
	cmp -n "$(stat -c %s "$1")" "$T/export.raw" "$1" || fail "export differs from $1"
	[ "$(stat -c %s "$1")" -ge "$2" ] ||
		cmp -i "$(stat -c %s "$1")" "$T/export.raw" /dev/zero 2>&1 | grep -q "EOF on $T/export.raw" ||
		fail "export is not zero past $1"
	rm -f "$T/export.raw"
}

# libvhdi reads IMG as REF
vhdi_is() {
	local img=$1 ref=$2 out
	out=$(vhdiinfo "$img" 2>&1) || fail "vhdiinfo $img: $out"
	echo "$out" | grep -q "Media size.*($(stat -c %s "$ref") bytes)" || fail "vhdiinfo size: $out"
	vhdimount "$img" "$MNT" >/dev/null || fail "vhdimount $img"
	cmp "$MNT/vhdi1" "$ref" || { umount "$MNT"; fail "vhdimount of $img differs from $ref"; }
	umount "$MNT" || fail "umount"
}

info "1. QEMU writes, we read"
qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$T/src.raw" "$T/d.vhd"
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$T/src.raw" "$T/f.vhd"
qemu-img convert -f raw -O vpc -o subformat=dynamic "$T/src.raw" "$T/chs.vhd"
for img in d f; do
	td_serve "vhd:$T/$img.vhd" "$SOCK"
	export_is "$T/src.raw" 67108864
	nbd_expect "0 4k 0" "4k 4k 0x09" "2M 4k 0x48"
	td_stop "$TD_PID" || fail "exit status ($img)"
done
# QEMU rounds the size to a CHS geometry: we export what it wrote as current size
chs=$(qemu-img info --output=json "$T/chs.vhd" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
td_serve "vpc:$T/chs.vhd" "$SOCK"
export_is "$T/src.raw" $((chs / 4096 * 4096))
td_stop "$TD_PID" || fail "exit status (chs)"
# QEMU's own partial writes into a dynamic disk (blocks allocated by qemu-io)
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/q.vhd" 32M
qemu-io -f vpc -c "write -P 0x11 0 64k" -c "write -P 0x22 3M 4k" -c "write -P 0x33 5M 3M" \
	-c "write -P 0x44 31M 1M" "$T/q.vhd" >/dev/null || fail "qemu-io fill"
td_serve "vhd:$T/q.vhd" "$SOCK"
nbd_expect "0 64k 0x11" "64k 64k 0" "3M 4k 0x22" "5M 3M 0x33" "31M 1M 0x44" "20M 1M 0"
nbdcopy "$URI" "$T/export.raw" || fail "nbdcopy"
td_stop "$TD_PID" || fail "exit status (q)"
qemu-img convert -f vpc -O raw "$T/q.vhd" "$T/qemu.raw"
cmp "$T/export.raw" "$T/qemu.raw" || fail "our export of a qemu-io-written disk differs from qemu-img convert"
rm -f "$T/export.raw" "$T/qemu.raw"

info "2. We write, QEMU and libvhdi read (dynamic and fixed)"
for sub in dynamic fixed; do
	img=$T/w-$sub.vhd
	qemu-img create -q -f vpc -o subformat=$sub,force_size=on "$img" 64M
	cp "$T/src.raw" "$T/ref.raw"
	td_serve "vhd:$img" "$SOCK"
	nbdcopy "$T/src.raw" "$URI" || fail "nbdcopy to our server ($sub)"
	ops=(-c "write -P 0x5a 3M 12k" -c "write -z 8M 3M" -c "write -P 0x6b 63M 1M"
		-c "write -P 0x7c 2093056 8k")
	qemu-io -f raw "${ops[@]}" -c flush "$URI" >/dev/null || fail "qemu-io over NBD ($sub)"
	qemu-io -f raw "${ops[@]}" "$T/ref.raw" >/dev/null
	export_is "$T/ref.raw" 67108864
	td_stop "$TD_PID" || fail "exit status ($sub)"
	out=$(qemu-img compare -f vpc -F raw "$img" "$T/ref.raw" 2>&1) || fail "qemu-img compare ($sub): $out"
	vhdi_is "$img" "$T/ref.raw"
	# QEMU writes into the image we wrote (new blocks after ours), we read it all
	more=(-c "write -P 0x91 40M 1M" -c "write -P 0x92 2101248 4k")
	qemu-io -f vpc "${more[@]}" "$img" >/dev/null || fail "qemu-io into our image ($sub)"
	qemu-io -f raw "${more[@]}" "$T/ref.raw" >/dev/null
	td_serve "vhd:$img" "$SOCK"
	export_is "$T/ref.raw" 67108864
	td_stop "$TD_PID" || fail "exit status, reopened ($sub)"
done
# a clean stop leaves the footer right after the last block (no tail)
size=$(stat -c %s "$T/w-dynamic.vhd")
[ "$size" -lt $((64 * 1024 * 1024 + 512 * 1024)) ] || fail "dynamic image is $size bytes after a clean stop"

info "2b. fio random writes with crc32c verify into a fresh dynamic disk"
img=$T/fio.vhd
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$img" 256M
td_serve "vhd:$img" "$SOCK"
fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bsrange=4k-256k --iodepth=16 \
	--size=192M --offset=32M --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--randrepeat=1 --output="$T/fio.txt" || { cat "$T/fio.txt"; fail "fio verify"; }
grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio reported errors"; }
nbdcopy "$URI" "$T/export.raw" || fail "nbdcopy"
td_stop "$TD_PID" || fail "exit status (fio)"
out=$(qemu-img compare -f vpc -F raw "$img" "$T/export.raw" 2>&1) || fail "qemu-img compare (fio): $out"
vhdi_is "$img" "$T/export.raw"
# QEMU allocates new blocks after ours; we read them
more=(-c "write -P 0x93 0 64k" -c "write -P 0x94 250M 4k")
qemu-io -f vpc "${more[@]}" "$img" >/dev/null || fail "qemu-io into our fio image"
qemu-io -f raw "${more[@]}" "$T/export.raw" >/dev/null
mv "$T/export.raw" "$T/ref2.raw"
td_serve "vhd:$img" "$SOCK"
export_is "$T/ref2.raw" $((256 << 20))
td_stop "$TD_PID" || fail "exit status (fio image reopened)"
rm -f "$T/ref2.raw"

info "3. crypt:vhd: (vdkey format/load, as crypt:qcow2:)"
KEY=$T/key
head -c 32 /dev/urandom >"$KEY"
img=$T/c.vhd
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$img" 96M
crypt_image "vhd:$img" "$KEY"
python3 -c 'import sys; sys.stdout.buffer.write((b"TOPSECRET-" * 410)[:4096] * 8192)' >"$T/m32.raw"
td_serve "crypt:vhd:$img" "$SOCK"
nbdcopy "$T/m32.raw" "$URI" || fail "nbdcopy to crypt:vhd"
td_stop "$TD_PID" || fail "exit (crypt)"
td_serve "crypt:vhd:$img" "$SOCK"
nbdcopy "$URI" "$T/c.raw" || fail "nbdcopy from crypt:vhd"
cmp <(head -c 32M "$T/c.raw") "$T/m32.raw" || fail "crypt:vhd round trip differs"
td_stop "$TD_PID" || fail "exit (crypt, 2)"
grep -q "TOPSECRET" "$img" && fail "plaintext marker found in the vhd file"
qemu-img convert -f vpc -O raw "$img" "$T/cq.raw" || fail "qemu-img convert of crypt:vhd's image"
vhdi_is "$img" "$T/cq.raw"
echo ok
