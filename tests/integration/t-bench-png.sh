#!/bin/bash
# bench/run.sh --png: without gnuplot it says so and fails at once (before
# any benchmark runs); with gnuplot, --png-only draws the chart of a saved
# run (bench/testdata/sample.json) without running anything.
. "$TD_SRC/tests/lib/common.sh"
need python3
py=$(python3 -c 'import sys; print(sys.executable)')

info "no gnuplot on PATH: a clear message, a non-zero exit, nothing run"
mkdir -p "$T/bin"
start=$SECONDS
out=$(cd "$TD_SRC" && PATH=$T/bin "$py" bench/bench.py --pairs aio --png "$T/x.png" 2>&1) &&
	fail "bench --png without gnuplot exited 0: $out"
echo "$out" | grep -q "needs gnuplot, which is not installed" || fail "message: $out"
[ $((SECONDS - start)) -lt 10 ] && [ ! -e "$T/x.png" ] || fail "the bench ran before failing"
echo "   $out"
out=$(cd "$TD_SRC" && PATH=$T/bin "$py" bench/bench.py --png-only bench/testdata/sample.json --png "$T/x.png" 2>&1) &&
	fail "--png-only without gnuplot exited 0"
echo "$out" | grep -q "needs gnuplot" || fail "message: $out"
echo "   --png-only, too: $out"
out=$(cd "$TD_SRC" && "$py" bench/bench.py --png-only bench/testdata/sample.json 2>&1) && fail "--png-only without --png passed"
echo "$out" | grep -q "needs --png" || fail "message: $out"

info "with gnuplot: the chart of a saved run"
if ! command -v gnuplot >/dev/null; then
	echo "   gnuplot is not installed: the chart itself is not drawn here"
	echo ok
	exit 0
fi
(cd "$TD_SRC" && bench/run.sh --png-only bench/testdata/sample.json --png "$T/chart.png") || fail "--png-only"
[ "$(head -c 8 "$T/chart.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "not a PNG"
[ ! -e "$T/chart.png.dat" ] || fail "the data file was left behind"
echo "   $(wc -c <"$T/chart.png") bytes"
echo ok
