#!/bin/bash
# Every libFuzzer target (fuzz/fuzz_*.c) runs over its checked-in corpus
# and a few thousand mutations with ASan+UBSan (fuzz/run.sh --smoke), so an
# input that once crashed a parser fails CI. Skips when clang with
# libFuzzer is not available. About 10-20 s, most of it compiling.
. "$TD_SRC/tests/lib/common.sh"
need flock
out=$("$TD_SRC/fuzz/run.sh" --smoke 2>&1)
rc=$?
echo "$out"
[ $rc -eq 77 ] && skip "$(echo "$out" | tail -n1)"
[ $rc -eq 0 ] || fail "a fuzz target crashed or did not build (see above; inputs in build-fuzz/crashes/)"
info "all fuzz targets clean on their corpora"
