#!/bin/bash
# Runs every unit test binary and every integration script and ends with
# the line "N passed, N failed, N skipped".  Exit code 77 from a test means
# "skipped" (a tool that cannot exist on this machine); anything else
# non-zero is a failure.  TESTS=pattern restricts the run.
#
# Tests run TD_TEST_JOBS at a time (default: the number of CPUs). Every test
# has its own temp dir, run dir, state dir and free ports (tests/lib/common.sh),
# so most can share the machine. A script whose first lines hold the marker
# "# test: serial" runs alone, after the others: it changes something
# machine-wide (users, /run/tdcrypt, loop devices, mounts) or measures
# speed. A script marked "# test: long" starts before the others, so the run
# does not end waiting for one long test. TD_TEST_JOBS=1 runs everything
# one after the other, in order.
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
jobs_max=${TD_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
case $jobs_max in '' | *[!0-9]* | 0) echo "TD_TEST_JOBS must be a positive number" >&2; exit 2 ;; esac

resdir=$(mktemp -d "${TMPDIR:-/tmp}/td-run.XXXXXX")
trap 'rm -rf "$resdir"' EXIT
: >"$resdir/print.lock"

# run_one NAME TIMEOUT CMD...: runs one test; prints its line (under a lock,
# so lines of tests that end together do not mix) and leaves its result in
# $resdir/NAME.rc
run_one() {
	local name=$1 tmo=$2; shift 2
	local log="$logdir/${name////_}.log" start=$SECONDS rc msg
	timeout -k 10 "$tmo" "$@" >"$log" 2>&1 </dev/null
	rc=$?
	local dur=$((SECONDS - start))
	case $rc in
	0) msg="PASS  $name (${dur}s)" ;;
	77) msg="SKIP  $name: $(tail -n1 "$log")" ;;
	*) msg="FAIL  $name (rc=$rc, ${dur}s) — last lines of $log:
$(tail -n 25 "$log" | sed 's/^/    /')" ;;
	esac
	flock "$resdir/print.lock" printf '%s\n' "$msg"
	echo "$rc" >"$resdir/${name////_}.rc"
}

names=() tmos=() cmds=() kind=()
add() { # add NAME TIMEOUT KIND CMD...; KIND: serial, long or -
	if [ -n "$pattern" ] && [[ "$1" != *$pattern* ]]; then return; fi
	names+=("$1") tmos+=("$2") kind+=("$3")
	cmds+=("$(printf '%q ' "${@:4}")")
}
for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	add "unit/$(basename "$t")" 300 - "$t"
done
# integration tests, then tests/security: one script per attack, named after it
for t in tests/integration/t-*.sh tests/security/t-*.sh; do
	[ -f "$t" ] || continue
	k=$(head -n 15 "$t" | sed -n 's/^# test: \(serial\|long\)\b.*/\1/p' | head -n1)
	add "$(basename "$(dirname "$t")")/$(basename "$t" .sh)" "${TD_TEST_TIMEOUT:-600}" "${k:--}" bash "$t"
done

launch() { # launch INDEX: in the background
	eval "run_one \"\${names[$1]}\" \"\${tmos[$1]}\" ${cmds[$1]}" &
}
if [ "$jobs_max" -eq 1 ]; then
	for i in "${!names[@]}"; do launch "$i"; wait; done
else
	order=()
	for i in "${!names[@]}"; do [ "${kind[$i]}" = long ] && order+=("$i"); done
	for i in "${!names[@]}"; do [ "${kind[$i]}" = - ] && order+=("$i"); done
	running=0
	for i in "${order[@]}"; do
		while [ "$running" -ge "$jobs_max" ]; do wait -n; running=$((running - 1)); done
		launch "$i"
		running=$((running + 1))
	done
	wait
	# then the serial ones, alone
	for i in "${!names[@]}"; do
		[ "${kind[$i]}" = serial ] || continue
		launch "$i"
		wait
	done
fi

pass=0 fail=0 skip=0 failed_names=""
for i in "${!names[@]}"; do
	n=${names[$i]}
	rc=$(cat "$resdir/${n////_}.rc" 2>/dev/null || echo 255)
	case $rc in
	0) pass=$((pass + 1)) ;;
	77) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)) failed_names="$failed_names $n" ;;
	esac
done
echo
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
