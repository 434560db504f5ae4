#!/bin/bash
# Unaligned 512-byte writes from two connections interleaved on the same
# 4 KiB blocks: the read-modify-write path must not lose an update.
. "$TD_SRC/tests/lib/common.sh"
use_test_build # the fault driver
IMG=$T/disk.img
SOCK=$T/nbd.sock
truncate -s 16M "$IMG"
td_serve "aio:$IMG" "$SOCK"
"$TD_TOOLS/nbd_interleave" "$(uri_of "$SOCK")" 40 || fail "lost updates"
# the same with a delaying layer underneath, so requests overlap for longer
td_stop "$TD_PID" || fail "exit status"
td_serve "fault,delay_ms=2:aio:$IMG" "$SOCK"
"$TD_TOOLS/nbd_interleave" "$(uri_of "$SOCK")" 10 || fail "lost updates (delayed lower layer)"
td_stop "$TD_PID" || fail "exit status"
