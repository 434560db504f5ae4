#!/bin/bash
# Runs every unit test binary and every integration script and ends with
# the line "N passed, N failed, N skipped".  Exit code 77 from a test means
# "skipped" (a tool that cannot exist on this machine); anything else
# non-zero is a failure.  TESTS=pattern restricts the run.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
export TD_BIN="$PWD/$BUILD/bin"
export TD_TESTBIN="$PWD/$BUILD/tests/bin" # the same programs with the test drivers
export TD_TOOLS="$PWD/$BUILD/tests/tools"
export TD_SRC="$PWD"
pattern=${TESTS:-}
logdir="$PWD/$BUILD/test-logs"
mkdir -p "$logdir" # concurrent runs may share it: each test overwrites only its own log

pass=0 fail=0 skip=0 failed_names=""
run_one() {
	local name=$1 tmo=$2; shift 2
	if [ -n "$pattern" ] && [[ "$name" != *$pattern* ]]; then return; fi
	local log="$logdir/${name////_}.log" start=$SECONDS rc
	timeout -k 10 "$tmo" "$@" >"$log" 2>&1
	rc=$?
	local dur=$((SECONDS - start))
	case $rc in
	0) pass=$((pass + 1)); echo "PASS  $name (${dur}s)" ;;
	77) skip=$((skip + 1)); echo "SKIP  $name: $(tail -n1 "$log")" ;;
	*) fail=$((fail + 1)); failed_names="$failed_names $name"
	   echo "FAIL  $name (rc=$rc, ${dur}s) — last lines of $log:"
	   tail -n 25 "$log" | sed 's/^/    /' ;;
	esac
}

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	run_one "unit/$(basename "$t")" 300 "$t"
done
# integration tests, then tests/security: one script per attack, named after it
for t in tests/integration/t-*.sh tests/security/t-*.sh; do
	[ -f "$t" ] || continue
	d=$(basename "$(dirname "$t")")
	run_one "$d/$(basename "$t" .sh)" "${TD_TEST_TIMEOUT:-600}" bash "$t"
done

echo
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
