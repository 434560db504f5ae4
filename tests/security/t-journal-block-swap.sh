#!/bin/bash
# Attack: copy one valid journal block over another of the same epoch, to
# hide a record (security issue 15, item 6). Block 5 holds A (in the tag
# table); TRIM block 5; later writes elsewhere, each flushed; kill -9 the
# tapdisk. The TRIM's zero range now lives only in the journal. Copying a
# later journal block over the TRIM's, and putting A's ciphertext back,
# would bring A back. Block 5 must read EIO, or the open be refused with an
# integrity message — never A. Variants:
#   copy+restore    a later block copied over the TRIM's; A put back
#   swap+restore    the TRIM's block and a later one swapped; A put back
#   copy            the copy alone (the data left as the TRIM left it)
#   restore         A put back, journal untouched: the TRIM still wins (zeros)
# and a control: the untouched image reads zeros at block 5 and the later
# writes where they were written.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/attack.sh"
need qemu-io keyctl python3
IMG=$T/disk.img
KEY=$T/pass
SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")
truncate -s 64M "$IMG"
printf 'journal swap test %s' "$RANDOM" >"$KEY"
crypt_image "aio:$IMG" "$KEY"
LAYOUT=$(layout_of "aio:$IMG") || fail "no integrity_layout"
B5=$((5 * 4096))

info "A (0x41) to block 5, clean close: A is in the tag table"
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite 0x41 $B5
td_stop "$TD_PID" || fail "stop"
rm -f "$SOCK"
cp --sparse=always "$IMG" "$T/a.img"

info "TRIM block 5, flush; B (0x42) at 1 MiB, flush; C (0x43) at 2 MiB, flush; kill -9"
td_serve "crypt:aio:$IMG" "$SOCK"
out=$(qemu-io -f raw -t writeback -c "discard $B5 4k" -c flush "$URI" 2>&1)
grep -q "discard" <<<"$out" || fail "discard: $out"
qwrite 0x42 $((1 << 20))
qwrite 0x43 $((2 << 20))
kill9
cp --sparse=always "$IMG" "$T/killed.img"
jforge list
trim=$(jforge find-zero 5) || fail "the TRIM of block 5 is not in the journal"
later=$(jforge find-write $((2 << 20 >> 12))) || fail "the write of C is not in the journal"
later=${later%% *}
info "the TRIM's zero range is in journal block $trim, C's record in block $later"

expect_reads "control: the TRIM stands" 5 0x00
cp --sparse=always "$T/killed.img" "$IMG"
expect_reads "control: C" $((2 << 20 >> 12)) 0x43

cp --sparse=always "$T/killed.img" "$IMG"
jforge copy "$later" "$trim"
jforge put-data "$T/a.img" 5
expect_caught "copy+restore: journal block $later copied over $trim, A put back" 5 0x41
result_copy=$CAUGHT

cp --sparse=always "$T/killed.img" "$IMG"
jforge swap "$later" "$trim"
jforge put-data "$T/a.img" 5
expect_caught "swap+restore: journal blocks $trim and $later swapped, A put back" 5 0x41

cp --sparse=always "$T/killed.img" "$IMG"
jforge copy "$later" "$trim"
expect_caught "copy: journal block $later copied over $trim" 5 0x41

cp --sparse=always "$T/killed.img" "$IMG"
jforge put-data "$T/a.img" 5
expect_reads "restore: A put back, the journal untouched (the TRIM still wins)" 5 0x00

attack_verdict
echo "ok: a hidden TRIM record never brought the old contents back (copy+restore: $result_copy)"
