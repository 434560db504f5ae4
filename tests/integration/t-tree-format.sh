#!/bin/bash
# test: long — started first, so the parallel run does not end waiting for it
# One formatter for the whole tree: every C file is what clang-format makes
# of it with the tree's .clang-format (scripts/check-format.sh; `make
# format` fixes a difference), and the check notices a file that is not.
. "$TD_SRC/tests/lib/common.sh"
need clang-format git
out=$("$TD_SRC/scripts/check-format.sh") || fail "the tree is not formatted:
$out"
echo "$out"
info "a badly formatted file is noticed"
git -C "$TD_SRC" ls-files '*.c' '*.h' | grep -v '^fuzz/corpus/' >"$T/files"
(cd "$TD_SRC" && tar cf - -T "$T/files" .clang-format) | (mkdir -p "$T/tree" && cd "$T/tree" && tar xf -)
sed -i 's/^\tif (/  if  (/' "$T/tree/tapdisk/core/loop.c"
out=$("$TD_SRC/scripts/check-format.sh" "$T/tree") && fail "a misformatted loop.c passed"
echo "$out" | grep -q "tapdisk/core/loop.c is not formatted" || fail "message: $out"
echo "   caught: $out"
echo ok
