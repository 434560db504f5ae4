#!/bin/bash
# Power loss at any point of an online grow (issue 19, "Online grow"):
# growsim records every request a crypt grow sends to the image (the file
# extension, the integrity metadata written at its new place, the header
# copies) and opens every image a crash between or during them can leave
# (unflushed requests in any subset, one torn at a 512-byte boundary). Each
# must open with the old or the new size, read without an error, keep the
# old data, read zeros past the old size, and, when grown, keep writes to
# the new range across a reopen. For integrity version 2, version 1 and
# none, each with a large grow and a 4 KiB one (the new metadata past a
# gap). Then a crypt layer broken on purpose (the header committed before
# the layers below grew: a test build's switch) must make it report
# violations: the test can fail.
. "$TD_SRC/tests/lib/common.sh"
SIM=$TD_TOOLS/growsim
[ -x "$SIM" ] || fail "growsim is not built ($SIM)"
seed=${GROWSIM_SEED:-$(( (RANDOM << 15) | RANDOM ))}
DIR=$(mktemp -d /dev/shm/growsim.XXXXXX 2>/dev/null) || DIR=$T
td_on_exit "rm -rf '$DIR'"

for integ in 2 1 none; do
	for grow in $((6 << 20)) 4096; do
		info "integrity $integ, grow by $grow bytes, seed $seed"
		"$SIM" --seed "$seed" --dir "$DIR" --integrity "$integ" --grow "$grow" \
			>"$T/sim.out" 2>"$T/sim.err"
		rc=$?
		cat "$T/sim.out"
		[ $rc = 0 ] || fail "growsim reported violations (rc=$rc); reproduce with: $SIM --seed $seed --integrity $integ --grow $grow"
		line=$(grep '^growsim: seed=' "$T/sim.out") || fail "no summary line"
		images=$(sed -n 's/.* crash_images=\([0-9]*\).*/\1/p' <<<"$line")
		grown=$(sed -n 's/.* grown=\([0-9]*\).*/\1/p' <<<"$line")
		[ "${images:-0}" -ge 10 ] || fail "only ${images:-0} crash images"
		# both outcomes occur: crashes before and after the commit point
		[ "${grown:-0}" -ge 1 ] && [ "${grown:-0}" -lt "$images" ] ||
			fail "grown in $grown of $images images: the run did not cross the commit point"
	done
done

for integ in 2 none; do
	info "the header committed first (broken on purpose), integrity $integ: must fail"
	"$SIM" --seed "$seed" --dir "$DIR" --integrity "$integ" --break header-first \
		>"$T/bad.out" 2>"$T/bad.err"
	rc=$?
	tail -n 2 "$T/bad.out"
	[ $rc = 1 ] || fail "broken order, integrity $integ: expected exit 1 (violations), got $rc"
	grep -q '^VIOLATION seed=' "$T/bad.out" || fail "violations are not reported with the seed"
done
echo ok
