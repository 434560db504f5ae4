#!/bin/bash
# Hostile and broken NBD clients (tests/tools/nbd_hostile.c) against one
# tapdisk serving a 64 MiB raw image. Every case must end in an NBD error
# or a disconnect, and a well-behaved client must be served after each.
# Afterwards the process must still be alive, nbdinfo must report the
# right size, and SIGTERM must give a clean exit (status 0).
# A second server delays every completion (fault:delay_ms) so that the
# disconnect cases really leave requests in flight, and is then stopped
# with SIGTERM in the middle of a flood.
. "$TD_SRC/tests/lib/common.sh"
use_test_build # the fault driver
need nbdinfo
HOSTILE=$TD_TOOLS/nbd_hostile
[ -x "$HOSTILE" ] || fail "$HOSTILE is not built"

# Under AddressSanitizer freed buffers sit in a 256 MiB quarantine, which
# would count against the flood cases' RSS limit: keep it small.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

IMG=$T/disk.img
SOCK=$T/nbd.sock
truncate -s 64M "$IMG"
td_serve "aio:$IMG" "$SOCK"

info "hostile cases against tapdisk pid $TD_PID"
"$HOSTILE" "$SOCK" "$TD_PID" || fail "hostile cases failed (see above)"

info "the server survived and still answers"
kill -0 "$TD_PID" 2>/dev/null || fail "tapdisk died"
size=$(nbdinfo --size "$(uri_of "$SOCK")") || fail "nbdinfo could not connect"
[ "$size" = 67108864 ] || fail "nbdinfo reports size $size, want 67108864"

info "clean shutdown on SIGTERM"
td_stop "$TD_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "tapdisk exit status $rc after SIGTERM"

info "disconnects with requests held in the disk (every completion delayed 30 ms)"
IMG2=$T/slow.img
SOCK2=$T/slow.sock
truncate -s 64M "$IMG2"
td_serve "fault,delay_ms=30:aio:$IMG2" "$SOCK2"
NBD_HOSTILE_ONLY=disconnect_mid_payload,disconnect_inflight,disc_with_inflight,cross_connection,flush_trim_zeroes,bad_request_magic \
	"$HOSTILE" "$SOCK2" "$TD_PID" || fail "hostile cases failed on the slow disk"

info "SIGTERM in the middle of a flood with unread replies"
NBD_HOSTILE_ONLY=flood_big_reads "$HOSTILE" "$SOCK2" >"$T/flood.out" 2>&1 &
FLOOD=$!
sleep 1.5
kill -0 "$TD_PID" 2>/dev/null || fail "tapdisk died during the flood"
start=$SECONDS
td_stop "$TD_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "tapdisk exit status $rc after SIGTERM under load"
[ $((SECONDS - start)) -le 20 ] || fail "shutdown under load took $((SECONDS - start)) s"
wait "$FLOOD" # the client fails (server went away); only the server's fate matters
echo "all hostile cases passed"
