#!/bin/bash
# The layers only include downwards (docs/ARCHITECTURE.md): the checker
# passes on the tree, and fails — naming the file, the include and the
# rule — on a copy with a lower layer including a higher one, with two
# siblings including each other, and with a program comparing a driver's
# name instead of asking for a capability.
. "$TD_SRC/tests/lib/common.sh"
need python3
CHECK=$TD_SRC/scripts/check-layers.py
out=$(python3 "$CHECK" "$TD_SRC") || fail "the tree breaks its layers: $out"
echo "$out"

copy() {
	rm -rf "$T/tree"
	mkdir -p "$T/tree"
	(cd "$TD_SRC" && tar cf - tapdisk crypt integrity keymgr tests/drivers) | (cd "$T/tree" && tar xf -)
}
# expect_caught FILE LINE NEEDLE -- put LINE at the top of FILE in a copy; the
# checker must fail and say NEEDLE
expect_caught() {
	copy
	sed -i "1i $2" "$T/tree/$1"
	out=$(python3 "$CHECK" "$T/tree") && fail "not caught: '$2' in $1"
	echo "$out" | grep -q "^$1:1: .*$3" || fail "'$2' in $1: message: $out"
	echo "   caught: $(echo "$out" | grep "^$1:1:")"
}
info "a lower layer including a higher one"
expect_caught tapdisk/core/loop.c '#include "tapdisk/daemon/server.h"' "is above tapdisk/core"
expect_caught crypt/backend/cipher.c '#include "keymgr/keyring.h"' "is above crypt/backend"
expect_caught integrity/format.c '#include "crypt/header.h"' "is above integrity"
info "siblings including each other"
expect_caught integrity/format.c '#include "tapdisk/qcow2/qcow2.h"' "are siblings"
info "a program comparing a driver's name"
expect_caught tapdisk/daemon/server.c 'static int f(const struct td_driver *drv) { return !strcmp(drv->name, "qcow2"); }' \
	"compares a driver's name"
echo ok
