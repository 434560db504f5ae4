#!/bin/bash
# Attack: roll back a block whose newest write was flushed, without touching
# the journal (security issue 15, item 7). Write and flush block 5, write
# and flush blocks 6 and 7, kill -9 the tapdisk, put block 5's older
# ciphertext back: block 5 must read EIO (or the open be refused), never
# the older contents. Variants, each from a kill -9 in the middle of an
# epoch (the records still in the journal):
#   older-table     the older version is the one in the tag table (A)
#   older-journal   the older version is an earlier flushed write of the
#                   same epoch (B, then D, both flushed; B put back)
#   last-flush      the flush was the last thing before the kill (nothing
#                   after it in the journal)
#   fua             a FUA write, no FLUSH at all
#   never-written   a never-written block, written and flushed, zeroed again
#   torn            the limit docs/FORMAT.md used to document: a block never
#                   written before, written and flushed (E), then a second
#                   write (F) not flushed and torn: half F, half E
# and controls: the untouched images read the flushed data.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/attack.sh"
need qemu-io keyctl python3
IMG=$T/disk.img
KEY=$T/pass
SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")
truncate -s 64M "$IMG"
printf 'rollback test %s' "$RANDOM" >"$KEY"
crypt_image "aio:$IMG" "$KEY"
LAYOUT=$(layout_of "aio:$IMG") || fail "no integrity_layout"
B5=$((5 * 4096))

info "A (0x41) to block 5, clean close: A is in the tag table"
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite 0x41 $B5
td_stop "$TD_PID" || fail "stop"
rm -f "$SOCK"
cp --sparse=always "$IMG" "$T/a.img"

# --- the attack as reported ---------------------------------------------------
info "B (0x42) to block 5, flush; C (0x43) to blocks 6 and 7, flush; kill -9"
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite 0x42 $B5
qwrite 0x43 $((6 * 4096)) 8k
kill9
cp --sparse=always "$IMG" "$T/abc.img"
jforge list

expect_reads "control (older-table)" 5 0x42
cp --sparse=always "$T/abc.img" "$IMG"
expect_reads "control (older-table), blocks 6-7" 7 0x43

cp --sparse=always "$T/abc.img" "$IMG"
jforge put-data "$T/a.img" 5
expect_caught "older-table: A's ciphertext put back" 5 0x41
result_table=$CAUGHT

# --- the older version is in the journal too ------------------------------------
info "from A: B to block 5, flush (copy); D (0x44) to block 5, flush; C to 6-7, flush; kill -9"
cp --sparse=always "$T/a.img" "$IMG"
rm -f "$TDCRYPT_STATE_DIR"/*/generation
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite 0x42 $B5
cp --sparse=always "$IMG" "$T/ab-live.img" # B's ciphertext is on disk
qwrite 0x44 $B5
qwrite 0x43 $((6 * 4096)) 8k
kill9
cp --sparse=always "$IMG" "$T/abdc.img"
jforge list
expect_reads "control (older-journal)" 5 0x44
cp --sparse=always "$T/abdc.img" "$IMG"
jforge put-data "$T/ab-live.img" 5
expect_caught "older-journal: B's ciphertext put back over D" 5 0x42

# --- the last flush, nothing after it ---------------------------------------------
info "from A: B to block 5, flush; kill -9 right away"
cp --sparse=always "$T/a.img" "$IMG"
rm -f "$TDCRYPT_STATE_DIR"/*/generation
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite 0x42 $B5
kill9
cp --sparse=always "$IMG" "$T/ab.img"
jforge list
expect_reads "control (last-flush)" 5 0x42
cp --sparse=always "$T/ab.img" "$IMG"
jforge put-data "$T/a.img" 5
expect_caught "last-flush: A put back, the flush was the last journal write" 5 0x41

# --- a FUA write, no flush ----------------------------------------------------------
info "from A: B to block 5 as a FUA write, the client dies before any flush; kill -9"
cp --sparse=always "$T/a.img" "$IMG"
rm -f "$TDCRYPT_STATE_DIR"/*/generation
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite_noflush 0x42 $B5 -f
kill9
cp --sparse=always "$IMG" "$T/ab-fua.img"
jforge list
expect_reads "control (fua)" 5 0x42
cp --sparse=always "$T/ab-fua.img" "$IMG"
jforge put-data "$T/a.img" 5
expect_caught "fua: A put back over a FUA write" 5 0x41

# --- a never-written block ------------------------------------------------------------
info "from A: E (0x45) to block 9 (never written before), flush; C to 6-7, flush; kill -9"
cp --sparse=always "$T/a.img" "$IMG"
rm -f "$TDCRYPT_STATE_DIR"/*/generation
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite 0x45 $((9 * 4096))
qwrite 0x43 $((6 * 4096)) 8k
kill9
cp --sparse=always "$IMG" "$T/ae.img"
expect_reads "control (never-written)" 9 0x45
cp --sparse=always "$T/ae.img" "$IMG"
jforge zero-data 9
expect_caught "never-written: block 9 zeroed under a flushed write" 9 0x00

# --- torn over a flushed write of a never-written block --------------------------------
info "from A: E to block 12, flush (copy); F (0x46) to block 12, no flush; kill -9; tear F over E"
cp --sparse=always "$T/a.img" "$IMG"
rm -f "$TDCRYPT_STATE_DIR"/*/generation
td_serve "crypt:aio:$IMG" "$SOCK"
qwrite 0x45 $((12 * 4096))
cp --sparse=always "$IMG" "$T/ae12.img" # E's ciphertext
qwrite_noflush 0x46 $((12 * 4096))
kill9
cp --sparse=always "$IMG" "$T/aef.img"
jforge list
cp --sparse=always "$T/aef.img" "$IMG"
jforge put-data "$T/ae12.img" 12 2048 4096 # the second half is still E: torn at 2048
expect_caught "torn: F torn over the flushed E (block never written before)" 12 0x00

attack_verdict
echo "ok: no flushed block was rolled back (the reported attack: $result_table)"
