#!/bin/bash
# Power-loss simulation of the integrity layer (issue 4, "Must show" 2).
# crashsim records every write and flush below the integrity layer during a
# random concurrent workload, builds crash images from prefixes of that log
# (unflushed writes dropped, reordered, partly applied, one torn at a
# 512-byte boundary), recovers each and checks: no integrity error except on
# a torn data block, every block holds a version written to it, flushed data
# intact, and — with a rollback attacker that puts older states back into
# blocks whose newest write was flushed — that such blocks read as EIO,
# never as an older version (flush points, docs/FORMAT.md). Then the same
# simulator against layers broken on purpose must report violations: the
# ordering (data before its journal records), and flush points that are not
# written ("off"), go out before the lower flush ("early") or also claim the
# writes still in flight ("noexcl"); crashsim --break selects those switches
# of the test build (ti_test_break). The test can fail.
#
# CRASHSIM_SEED=N reproduces a run; CRASHSIM_LONG=1 runs thousands of points.
. "$TD_SRC/tests/lib/common.sh"
SIM=$TD_TOOLS/crashsim
[ -x "$SIM" ] || fail "crashsim is not built ($SIM)"
seed=${CRASHSIM_SEED:-$(( (RANDOM << 15) | RANDOM ))}
long=()
[ "${CRASHSIM_LONG:-0}" = 1 ] && long=(--long)
# images live on tmpfs when there is one: the simulation flushes a lot
DIR=$(mktemp -d /dev/shm/crashsim.XXXXXX 2>/dev/null) || DIR=$T
td_on_exit "rm -rf '$DIR'"

info "crash simulation, seed $seed (≥ 200 crash points)"
"$SIM" --seed "$seed" --points 250 "${long[@]}" --dir "$DIR" >"$T/sim.out" 2>"$T/sim.err"
rc=$?
cat "$T/sim.out"
[ $rc = 0 ] || fail "crashsim reported violations (rc=$rc); reproduce with: $SIM --seed $seed"
summary=$(grep '^crashsim: seed=.*violations=' "$T/sim.out") || fail "no summary line"
points=$(sed -n 's/.* crash_points=\([0-9]*\).*/\1/p' <<<"$summary")
[ "${points:-0}" -ge 200 ] || fail "only ${points:-0} crash points"
grep -q ' violations=0 ' <<<"$summary" || fail "violations in: $summary"
grep -q 'integrity layout version 2 (freshness tree)' "$T/sim.out" ||
	fail "the simulation did not run with the freshness tree (layout version 2)"
# the run must actually have exercised what it claims to
ckpts=$(sed -n 's/.* checkpoints=\([0-9]*\).*/\1/p' <<<"$summary")
torn=$(sed -n 's/.* torn=\([0-9]*\).*/\1/p' <<<"$summary")
[ "${ckpts:-0}" -ge 2 ] || fail "the workload ran only ${ckpts:-0} checkpoints"
[ "${torn:-0}" -ge 10 ] || fail "only ${torn:-0} torn writes simulated"
fpoints=$(sed -n 's/.* flush_points=\([0-9]*\).*/\1/p' <<<"$summary")
rolled=$(sed -n 's/.* rolled_back=\([0-9]*\).*/\1/p' <<<"$summary")
[ "${fpoints:-0}" -ge 5 ] || fail "only ${fpoints:-0} flush points written"
[ "${rolled:-0}" -ge 50 ] || fail "the rollback attacker changed only ${rolled:-0} blocks"

info "the same run with the journal wait switched off must fail"
"$SIM" --break no-journal-wait --seed "$seed" --points 250 --dir "$DIR" \
	>"$T/bad.out" 2>"$T/bad.err"
rc=$?
tail -n 3 "$T/bad.out"
[ $rc = 1 ] || fail "broken ordering: expected exit 1 (violations), got $rc"
bad=$(grep '^crashsim: seed=.*violations=' "$T/bad.out") || fail "no summary line (broken run)"
nbad=$(sed -n 's/.* violations=\([0-9]*\).*/\1/p' <<<"$bad")
[ "${nbad:-0}" -gt 0 ] || fail "broken ordering went unnoticed"
grep -q '^VIOLATION seed=' "$T/bad.out" || fail "violations are not reported with seed and point"
for mode in off early noexcl; do
	info "flush points broken on purpose ($mode) must fail"
	"$SIM" --break "fp-$mode" --seed "$seed" --points 250 --dir "$DIR" \
		>"$T/fp-$mode.out" 2>"$T/fp-$mode.err"
	rc=$?
	grep -m 3 '^VIOLATION' "$T/fp-$mode.out" | cut -c 1-220
	[ $rc = 1 ] || fail "flush points $mode: expected exit 1 (violations), got $rc"
	n=$(sed -n 's/^crashsim: seed=.* violations=\([0-9]*\).*/\1/p' "$T/fp-$mode.out")
	[ "${n:-0}" -gt 0 ] || fail "flush points $mode went unnoticed"
	eval "n_$mode=$n"
done
echo "ok: $points crash points clean; broken ordering caught with $nbad violations;" \
	"broken flush points caught (off: $n_off, early: $n_early, noexcl: $n_noexcl violations)"
