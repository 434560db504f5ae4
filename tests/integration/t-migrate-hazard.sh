#!/bin/bash
# test: long — started first, so the parallel run does not end waiting for it
# Migration handover without a write-after-write hazard (docs/MIGRATION.md):
# a write W1 held in flight on the source, pause, the destination opens
# the image, the frontend reissues W1 and writes W2: the block must hold
# W2, in 100 random repetitions. The same with a source whose pause is
# broken on purpose (the test driver "hazard": it releases the image while
# a write is still held) must show the hazard: the test can fail.
. "$TD_SRC/tests/lib/common.sh"
use_test_build # the fault driver
IMG=$T/disk.img
truncate -s 8M "$IMG"
out=$("$TD_TOOLS/migrate_hazard" "$IMG" 100) || fail "hazard with the correct pause: $out"
echo "$out"
echo "$out" | grep -q "100 repetitions, 0 hazards" || fail "unexpected: $out"
# W1 is held 0.8-1.6 s here: the destination (a fresh tapdisk, slow to
# start in a sanitizer build) must write before it lands for the hazard to
# show. The production tapdisk does not even know the test drivers:
"$TD_BIN/tapdisk" drivers | grep -qE "^(fault|record|hazard) " && fail "test drivers in the production build"
out=$(MIGRATE_HAZARD_DELAY_MS=800 "$TD_TOOLS/migrate_hazard" "$IMG" 10 --broken 2>&1)
rc=$?
echo "broken pause: $(echo "$out" | tail -1)"
[ $rc = 3 ] || fail "the broken pause did not show the hazard (rc=$rc): $out"
echo ok
