#!/bin/sh
# Builds the Xen backend programs into build/xen/ (or $1):
#   tapback      the xenstore backend daemon (real libxenstore)
#   xsd_standin  a TEST STAND-IN xenstore server (no hypervisor needed)
#   xs_cli       a tiny libxenstore client for tests
set -e
cd "$(dirname "$0")/.."
OUT=${1:-build/xen}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
WARN="-std=gnu11 -Wall -Wextra -Werror"
XS=$(pkg-config --cflags --libs xenstore)
mkdir -p "$OUT"
$CC $WARN $CFLAGS -o "$OUT/xsd_standin" xen/xsd_standin.c
$CC $WARN $CFLAGS -o "$OUT/xs_cli" xen/xs_cli.c $XS
$CC $WARN $CFLAGS -o "$OUT/tapback" xen/tapback.c $XS
