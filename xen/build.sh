#!/bin/sh
# Builds the Xen backend programs into build/xen/ (or $1) — `make` does the
# same:
#   tapback      the xenstore backend daemon (real libxenstore)
#   xs_cli       a tiny libxenstore client for tests
# and, into build/tests/xen/ (beside $1), the TEST STAND-IN xenstore server
# tests/xen/xsd_standin.c (no hypervisor needed).
set -e
cd "$(dirname "$0")/.."
OUT=${1:-build/xen}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
WARN="-std=gnu11 -Wall -Wextra -Werror"
XS=$(pkg-config --cflags --libs xenstore)
TOUT=$(dirname "$OUT")/tests/xen
mkdir -p "$OUT" "$TOUT"
$CC $WARN $CFLAGS -o "$TOUT/xsd_standin" tests/xen/xsd_standin.c
$CC $WARN $CFLAGS -o "$OUT/xs_cli" xen/xs_cli.c $XS
$CC $WARN $CFLAGS -I. -o "$OUT/tapback" xen/tapback.c $XS
