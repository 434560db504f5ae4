#!/bin/bash
# Instruction-count regression guard (no timing): the crypt + integrity
# chain must cost little more than the XTS and MAC work it cannot avoid.
# Both runs are counted by callgrind, which is repeatable: a per-block
# allocation or a cipher/MAC context set up per block fails this test.
. "$TD_SRC/tests/lib/common.sh"
need valgrind keyctl python3
TOOL=$TD_TOOLS/chain_cost
case "$BUILD" in
*san*)
	# instruction counts of a sanitizer build mean nothing (and valgrind
	# cannot run ASan binaries): count the plain build's tool instead
	TOOL=$TD_SRC/build/tests/tools/chain_cost
	[ -x "$TOOL" ] || skip "sanitizer build: run plain 'make check' for the instruction-count guard"
	;;
esac
MIB=32
BLOCK_OPS=$((MIB * 256 * 2)) # written once, read once
REQS=$((MIB * 2))
IMG=$T/disk.img
truncate -s 64M "$IMG"
printf 'perf guard' >"$T/key"
vdkey format "aio:$IMG" --key-file "$T/key" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null || fail format
vdkey load "aio:$IMG" --key-file "$T/key" >/dev/null || fail load
td_on_exit "vdkey unload aio:$IMG >/dev/null 2>&1"
CG="valgrind --tool=callgrind --quiet"
$CG --callgrind-out-file="$T/cg.base" "$TOOL" baseline $MIB || fail "baseline run"
$CG --callgrind-out-file="$T/cg.chain" "$TOOL" chain "crypt:aio:$IMG" $MIB 2>/dev/null ||
	fail "chain run"
FN="malloc calloc EVP_CIPHER_CTX_new EVP_MAC_CTX_new"
python3 "$TD_SRC/tests/lib/cgcalls.py" "$T/cg.base" $FN >"$T/base.txt"
python3 "$TD_SRC/tests/lib/cgcalls.py" "$T/cg.chain" $FN >"$T/chain.txt"
get() { awk -v k="$2" '$1==k {print $2}' "$1"; }
ir_b=$(get "$T/base.txt" total); ir_c=$(get "$T/chain.txt" total)
al_b=$(( $(get "$T/base.txt" malloc) + $(get "$T/base.txt" calloc) ))
al_c=$(( $(get "$T/chain.txt" malloc) + $(get "$T/chain.txt" calloc) ))
ctx=$(( $(get "$T/chain.txt" EVP_CIPHER_CTX_new) + $(get "$T/chain.txt" EVP_MAC_CTX_new) ))
over=$(( (ir_c - ir_b) / BLOCK_OPS ))
allocs=$(( al_c - al_b ))
echo "instructions: baseline $ir_b, chain $ir_c: $over per block beyond the primitives (budget 2500)"
echo "allocations beyond the baseline: $allocs for $BLOCK_OPS block operations in $REQS requests (budget $((BLOCK_OPS / 4)))"
echo "cipher/MAC contexts created: $ctx (budget 16)"
[ "$over" -le 2500 ] || fail "the chain costs $over instructions per block beyond XTS + MAC"
[ "$allocs" -le $((BLOCK_OPS / 4)) ] || fail "$allocs allocations: something allocates per block"
[ "$ctx" -le 16 ] || fail "$ctx cipher/MAC contexts: something re-creates them per request or block"
echo ok
