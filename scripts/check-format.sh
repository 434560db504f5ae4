#!/bin/sh
# One formatter for the whole tree: every C file git knows (but the fuzz
# corpus) must be exactly what clang-format makes of it with the tree's
# .clang-format. Lists the files that differ and exits 1; `make format`
# fixes them. ROOT (default: the tree) may be another copy of it.
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$ROOT" || exit 2
command -v clang-format >/dev/null || { echo "check-format: clang-format is not installed" >&2; exit 2; }
files=$(git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^fuzz/corpus/')
[ -n "$files" ] || files=$(find . -name '*.[ch]' -not -path './fuzz/corpus/*' -not -path './build*' | sed 's|^\./||')
bad=""
for f in $files; do
	[ -f "$f" ] || continue
	clang-format --style=file "$f" | cmp -s - "$f" || bad="$bad $f"
done
if [ -n "$bad" ]; then
	for f in $bad; do echo "check-format: $f is not formatted (make format)"; done
	exit 1
fi
echo "check-format: $(echo "$files" | wc -w) files formatted as .clang-format says"
