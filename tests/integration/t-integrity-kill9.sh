#!/bin/bash
# kill -9 of tapdisk during a random-write storm, then restart (issue 4,
# "Must show" 3), three rounds on one crypt:aio image. nbd_storm writes
# (block, version) patterns at queue depth 16 with a flush every 16 writes
# and remembers, per block, the newest version acknowledged before a
# completed flush (or as FUA). After the kill the restarted tapdisk replays
# its journal; then a whole-disk read (nbdcopy) must see no error, every
# block must hold a version written to it and no older than its flushed
# one, and integrity_failures must stay 0.
. "$TD_SRC/tests/lib/common.sh"
need keyctl python3 nbdcopy
STORM=$TD_TOOLS/nbd_storm
[ -x "$STORM" ] || fail "nbd_storm is not built"
IMG=$T/disk.img
KEY=$T/pass
SOCK=$T/nbd.sock
STATE=$T/storm.state
URI=$(uri_of "$SOCK")
truncate -s 97M "$IMG"
printf 'kill -9 test %s' "$RANDOM" >"$KEY"
crypt_image "aio:$IMG" "$KEY"

for round in 1 2 3; do
	info "round $round: storm, kill -9 mid-flight"
	rm -f "$SOCK"
	td_serve "crypt:aio:$IMG" "$SOCK"
	"$STORM" storm "$URI" "$STATE" 60 >"$T/storm.$round.log" 2>&1 &
	sp=$!
	sleep "1.$((RANDOM % 9))" # 1.0 - 1.8 s into the storm
	kill -9 "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	wait "$sp" || fail "round $round: nbd_storm failed: $(cat "$T/storm.$round.log")"
	cat "$T/storm.$round.log"
	grep -q "went away" "$T/storm.$round.log" || fail "round $round: the storm ended before the kill"
	grep -q " [1-9][0-9]* flushes completed" "$T/storm.$round.log" ||
		fail "round $round: no flush completed before the kill"

	info "round $round: restart, whole-disk read, check flushed data"
	rm -f "$SOCK"
	mark=$(($(stat -c %s "$TAPDISK_RUNDIR/tapdisk.log") + 1))
	td_serve "crypt:aio:$IMG" "$SOCK"
	tail -c +"$mark" "$TAPDISK_RUNDIR/tapdisk.log" | grep -q "replaying" ||
		fail "round $round: no journal replay after kill -9"
	nbdcopy "$URI" null: || fail "round $round: whole-disk read failed"
	"$STORM" verify "$URI" "$STATE" || fail "round $round: flushed data not intact"
	f=$(stat_of -p "$TD_PID" integrity_failures)
	[ "$f" = 0 ] || fail "round $round: $f integrity failures"
	td_stop "$TD_PID" || fail "round $round: clean stop"
done
echo ok
