#!/bin/bash
# test: long — started first, so the parallel run does not end waiting for it
# Power loss at any point of the end of a volume-key rotation of an image
# with the integrity layer when the switch runs while the VBD serves
# (docs/FORMAT.md, "Volume-key rotation with the integrity layer",
# "Online, the same writes in the same order"): reencsim --online leaves
# the rotation before its last window and opens the image as a serving
# tapdisk does (ctx.rekey): the mover moves the last window, then switches
# on the loop (checkpoint under the old keys, tag pages loaded, the rekey
# checkpoint held, the header, the trusted generation). Every request is
# recorded, and every image a crash can leave (unflushed requests in any
# subset, one torn; completed FUA writes durable), with the trusted
# generation of that point, must open with both keys, finish its rotation
# (at the open or on the loop), read every block with its data, then open
# with the new key alone and not with the old one. Then the trusted
# generation advanced before the header commit (broken on purpose, a test
# build's switch) must be reported as the false rollback alarm.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/rotation.sh"
SIM=$TD_TOOLS/reencsim
[ -x "$SIM" ] || fail "reencsim is not built ($SIM)"
seed=${REENCSIM_SEED:-$(( (RANDOM << 15) | RANDOM ))}
DIR=$(mktemp -d /dev/shm/reencsim.XXXXXX 2>/dev/null) || DIR=$T
td_on_exit "rm -rf '$DIR'"

info "online switch, integrity 2, seed $seed"
"$SIM" --online --seed "$seed" --dir "$DIR" --integrity 2 >"$T/on.out" 2>"$T/on.err"
rc=$?
tail -n 3 "$T/on.out"
[ $rc = 0 ] || fail "reencsim --online reported violations (rc=$rc); reproduce with: $SIM --online --seed $seed"
reencsim_check "$T/on.out"

info "the trusted generation before the header commit (broken on purpose): must fail"
"$SIM" --online --seed "$seed" --dir "$DIR" --integrity 2 --break gen-early >"$T/bad.out" 2>"$T/bad.err"
rc=$?
tail -n 2 "$T/bad.out"
[ $rc = 1 ] || fail "broken order: expected exit 1 (violations), got $rc"
grep -q "^VIOLATION seed=.*rolled back" "$T/bad.out" || fail "the violation is not the false rollback alarm"
echo ok
