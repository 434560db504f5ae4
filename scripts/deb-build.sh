#!/bin/bash
# Builds the Debian packages (debian/) from a copy of the work tree — the
# files git tracks or would track, so uncommitted work is included and the
# tree itself gets no debian/tmp, no build-deb and nothing in its parent
# directory — and copies the .deb files into OUTDIR (default build/deb).
# Usage: scripts/deb-build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/deb}
for t in dpkg-buildpackage dh fakeroot scdoc; do
	command -v "$t" >/dev/null || { echo "deb-build: $t is not installed (scripts/install-deps.sh)" >&2; exit 1; }
done
ver=$(dpkg-parsechangelog -S Version)
W=$(mktemp -d /var/tmp/tddeb.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/tdcrypt-$ver"
git ls-files -z -co --exclude-standard | grep -zv '^build' |
	xargs -0 cp --parents -t "$W/tdcrypt-$ver"
(cd "$W/tdcrypt-$ver" && dpkg-buildpackage -us -uc -b -j"$(nproc)") >"$W/build.log" 2>&1 ||
	{ tail -40 "$W/build.log" >&2; echo "deb-build: dpkg-buildpackage failed" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/*.deb "$OUT"/*.changes "$OUT"/*.buildinfo
cp "$W"/*.deb "$W"/*.changes "$W"/*.buildinfo "$OUT"/
cp "$W/build.log" "$OUT/build.log"
ls "$OUT"/*.deb
