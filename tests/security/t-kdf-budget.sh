#!/bin/bash
# Attack: a hostile header exhausts the host at unlock. Every keyslot's KDF
# runs before the header MAC can tell a forged header from a real one, and
# the header chooses the KDF parameters: 16 slots of Argon2id at 4 GiB and
# 64 passes (hours of work, 4 GiB at a time), or of PBKDF2 at 2^31
# iterations (8 minutes each). vdkey must refuse, before running it, every
# keyslot over this host's KDF budget (memory and work per slot, work for
# all the slots tried for one passphrase), say which and how to override,
# and still open a good slot of the same header.
#
#   memory   16 x argon2id t=64 m=4 GiB: refused at once, in little memory,
#            naming each slot, the parameter and the budget
#   time     16 x pbkdf2 2^31-1 iterations: refused at once
#   total    15 slots each within the per-slot budget: only as many are
#            tried as the budget for one passphrase allows
#   mixed    an authentic header (MAC'd with the key) holding one hostile
#            slot and one expensive-but-allowed slot: the right passphrase
#            still unlocks, at once, and the hostile slot is named; lower
#            the budget and the good slot is refused too, until overridden
#   create   format and enroll refuse to make a slot over the budget unless
#            --allow-expensive-kdf; vdkey --help documents the options
# Each vdkey run is bounded (address-space limit and timeout), so the old
# behaviour (running the KDF) shows as a failure, not as a host brought down.
# Sanitizer builds get no address-space limit (their runtime reserves
# terabytes) and no peak-RSS bound. KDF_SECTIONS="memory time ..." runs a
# subset.
. "$TD_SRC/tests/lib/common.sh"
need keyctl python3
case "$BUILD" in *san*) SAN=1 ;; *) SAN=0 ;; esac
FORGE="python3 $TD_SRC/tests/lib/slotforge.py"
printf 'the right passphrase' >"$T/pass"
printf 'a second passphrase' >"$T/pass2"
printf 'a wrong one' >"$T/wrong"

# bounded LIMIT_MIB SECONDS COMMAND... -- runs COMMAND with its address space
# limited (not in sanitizer builds) and a timeout; its stdout+stderr in
# $T/out; prints exit status, wall time and peak RSS; sets RC, WALL (ms) and
# RSS (KiB).
bounded() {
	local lim=$1 secs=$2
	shift 2
	[ $SAN = 0 ] || lim=0 # a sanitizer's shadow memory needs terabytes of address space
	read -r RC WALL RSS < <(python3 - "$lim" "$secs" "$T/out" "$@" <<'PY'
import resource, subprocess, sys, time
lim, secs, out, cmd = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
def limit():
    if lim:
        resource.setrlimit(resource.RLIMIT_AS, (lim << 20, lim << 20))
t = time.monotonic()
with open(out, "w") as f:
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, preexec_fn=limit)
    try:
        rc = p.wait(timeout=secs)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = "timeout"
wall = int((time.monotonic() - t) * 1000)
print(rc, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
	)
	echo "\$ $* -> exit $RC, ${WALL} ms, peak RSS ${RSS} KiB"
	sed 's/^/    /' "$T/out"
}

expect_refused() { # WHAT MAX_MS MAX_RSS_KIB
	[ "$RC" != timeout ] || fail "$1: vdkey was still running the KDF after the timeout"
	[ "$RC" = 1 ] || fail "$1: exit status $RC, expected 1"
	[ "$WALL" -le "$2" ] || fail "$1: took ${WALL} ms (at most $2 expected)"
	# a sanitizer's runtime has its own memory appetite (quarantine, shadow)
	[ $SAN = 1 ] || [ "$RSS" -le "$3" ] || fail "$1: peak RSS ${RSS} KiB (at most $3 expected)"
}

new_image() { # NAME [format options]
	local name=$1
	shift
	truncate -s 64M "$T/$name"
	vdkey format "aio:$T/$name" --key-file "$T/pass" "$@" >/dev/null || fail "format $name"
	td_on_exit "vdkey unload aio:$T/$name >/dev/null 2>&1"
}

section_memory() {
	info "memory: 16 keyslots of argon2id t=64 m=4 GiB p=16 are refused at once, in little memory"
	new_image mem --pbkdf pbkdf2 --pbkdf-iterations 1000
	$FORGE "$T/mem" 0-15 argon2id 64 4194304 16
	bounded 3072 60 vdkey load "aio:$T/mem" --key-file "$T/pass"
	expect_refused "memory" 5000 131072
	for s in $(seq 0 15); do
		grep -q "keyslot $s: argon2id t=64 m=4194304 KiB p=16 needs 4096 MiB of memory; the budget is [0-9]* MiB per keyslot (--kdf-max-memory)" "$T/out" ||
			fail "memory: keyslot $s is not named with its parameter and the budget"
	done
	grep -q -- "--allow-expensive-kdf" "$T/out" || fail "memory: the message does not say how to override"
	keyctl search @u user "$(key_desc "aio:$T/mem")" >/dev/null 2>&1 &&
		fail "memory: a key was loaded"
}

section_time() {
	info "time: 16 keyslots of pbkdf2 with 2^31-1 iterations are refused at once"
	new_image tim --pbkdf pbkdf2 --pbkdf-iterations 1000
	$FORGE "$T/tim" 0-15 pbkdf2 2147483647
	bounded 1024 30 vdkey load "aio:$T/tim" --key-file "$T/pass"
	expect_refused "time" 5000 131072
	[ "$(grep -c "keyslot [0-9]*: pbkdf2-sha256 with 2147483647 iterations costs 256.00 reference seconds of work; the budget is 16.00 per keyslot (--kdf-max-time)" "$T/out")" = 16 ] ||
		fail "time: not every keyslot is named with its cost and the budget"
}

section_total() {
	info "total: only as many keyslots are tried as the budget for one passphrase allows"
	new_image tot --pbkdf pbkdf2 --pbkdf-iterations 1000
	$FORGE "$T/tot" 1-15 pbkdf2 1000000 # 0.12 reference seconds each
	bounded 1024 30 vdkey load "aio:$T/tot" --key-file "$T/wrong" --kdf-max-time 0.3 --kdf-max-total-time 0.5
	# five slots of real PBKDF2 run here (0.6 reference seconds): the bound
	# only catches a run of all fifteen on a loaded machine; what proves the
	# budget is the list of the eleven slots not tried, below
	expect_refused "total" 15000 131072
	# slot 0 (the cheapest, 1000 iterations) and slots 1-4 fit 0.5 s; 5..15 would not
	[ "$(grep -c "over the budget of 0.50 for one passphrase (--kdf-max-total-time)" "$T/out")" = 11 ] ||
		fail "total: expected 11 keyslots refused by the budget for one passphrase"
	grep -q "keyslot [0-4]:" "$T/out" && fail "total: a keyslot that fits the budget was not tried"
	grep -q "keyslot 5: pbkdf2-sha256 with 1000000 iterations costs 0.12 reference seconds; after the 0.48 of the cheaper keyslots tried first" "$T/out" ||
		fail "total: keyslot 5's message"
	info "total: the right passphrase still finds its (cheapest) slot among them; the forged header is then refused by its MAC"
	bounded 1024 30 vdkey load "aio:$T/tot" --key-file "$T/pass" --kdf-max-time 0.3 --kdf-max-total-time 0.5
	[ "$RC" = 1 ] && grep -q "passphrase is right but the header was changed without the volume key" "$T/out" ||
		fail "total: the right passphrase was not recognised"
}

section_mixed() {
	info "mixed: an authentic header with a hostile slot 0 and an expensive-but-allowed slot 1"
	new_image mix --pbkdf pbkdf2 --pbkdf-iterations 1000
	vdkey enroll "aio:$T/mix" --key-file "$T/pass" --new-key-file "$T/pass2" --slot 1 \
		--pbkdf argon2id --pbkdf-memory 524288 --pbkdf-iterations 1 --pbkdf-parallel 4 >/dev/null ||
		fail "enroll slot 1 (argon2id 512 MiB)"
	vdkey load "aio:$T/mix" --key-file "$T/pass" >/dev/null || fail "load mix"
	UUID=$(vdkey list "aio:$T/mix" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
	VK=$(keyctl pipe "$(keyctl search @u user "$(key_desc "aio:$T/mix")")" | head -c 64 | od -An -tx1 | tr -d ' \n')
	vdkey unload "aio:$T/mix" >/dev/null || fail "unload mix"
	# what the key's holder can do (enroll with --allow-expensive-kdf on another
	# host, or forge): slot 0 becomes pbkdf2 2^31-1, and the header MAC verifies
	$FORGE "$T/mix" 0 pbkdf2 2147483647 --volume-key "$VK"
	bounded 2048 30 vdkey load "aio:$T/mix" --key-file "$T/pass2"
	[ "$RC" = 0 ] || fail "mixed: the right passphrase of slot 1 did not unlock (exit $RC)"
	[ "$WALL" -le 10000 ] || fail "mixed: took ${WALL} ms"
	grep -q "loaded the key of image $UUID (keyslot 1)" "$T/out" || fail "mixed: not loaded from slot 1"
	grep -q "note: not tried: keyslot 0: pbkdf2-sha256 with 2147483647 iterations costs 256.00 reference seconds" "$T/out" ||
		fail "mixed: the skipped slot is not named"
	vdkey unload "aio:$T/mix" >/dev/null || fail "unload mix"
	info "mixed: with a budget below slot 1 it is refused too, naming it; --allow-expensive-kdf lets it be tried"
	bounded 2048 30 vdkey load "aio:$T/mix" --key-file "$T/pass2" --kdf-max-memory 256M
	expect_refused "lowered budget" 5000 131072
	grep -q "keyslot 1: argon2id t=1 m=524288 KiB p=4 needs 512 MiB of memory; the budget is 256 MiB per keyslot (--kdf-max-memory)" "$T/out" ||
		fail "lowered budget: keyslot 1 is not named"
	bounded 2048 30 vdkey remove "aio:$T/mix" --key-file "$T/pass2" --slot 0
	[ "$RC" = 0 ] || fail "remove the hostile slot with the right passphrase (exit $RC)"
	bounded 2048 30 vdkey load "aio:$T/mix" --key-file "$T/pass2" --kdf-max-memory 256M --allow-expensive-kdf
	[ "$RC" = 2 ] || fail "--allow-expensive-kdf with --kdf-max-memory must be a usage error"
	bounded 2048 30 vdkey load "aio:$T/mix" --key-file "$T/pass2" --allow-expensive-kdf
	[ "$RC" = 0 ] && grep -q "(keyslot 1)" "$T/out" || fail "--allow-expensive-kdf did not unlock slot 1"
	grep -q "note: not tried" "$T/out" && fail "a slot was skipped after the hostile one was removed"
	vdkey unload "aio:$T/mix" >/dev/null
}

section_create() {
	info "create: format and enroll refuse a keyslot over the budget unless --allow-expensive-kdf"
	truncate -s 64M "$T/new"
	bounded 1024 30 vdkey format "aio:$T/new" --key-file "$T/pass" --kdf-max-memory 64M --pbkdf-memory 131072
	expect_refused "format over the budget" 5000 131072
	grep -q "refusing to create a keyslot over this host's KDF budget: argon2id t=3 m=131072 KiB p=4 needs 128 MiB of memory; the budget is 64 MiB per keyslot (--kdf-max-memory)" "$T/out" ||
		fail "format: the refusal does not name the parameter and the budget"
	grep -q -- "--allow-expensive-kdf" "$T/out" || fail "format: no override named"
	vdkey list "aio:$T/new" >/dev/null 2>&1 && fail "format wrote a header after refusing"
	bounded 4096 60 vdkey format "aio:$T/new" --key-file "$T/pass" --kdf-max-time 0.1 --pbkdf-memory 131072
	expect_refused "format over the time budget" 5000 131072
	grep -q "costs 0.38 reference seconds of work; the budget is 0.10 per keyslot (--kdf-max-time)" "$T/out" ||
		fail "format: the time refusal"
	bounded 4096 60 vdkey format "aio:$T/new" --key-file "$T/pass" --pbkdf-memory 131072 --pbkdf-iterations 1 --allow-expensive-kdf
	[ "$RC" = 0 ] || fail "format --allow-expensive-kdf (exit $RC)"
	bounded 4096 60 vdkey enroll "aio:$T/new" --key-file "$T/pass" --new-key-file "$T/pass2" \
		--pbkdf pbkdf2 --pbkdf-iterations 200000000
	expect_refused "enroll over the budget" 5000 131072
	grep -q "refusing to create a keyslot over this host's KDF budget: pbkdf2-sha256 with 200000000 iterations costs 23.84 reference seconds of work; the budget is 16.00 per keyslot (--kdf-max-time)" "$T/out" ||
		fail "enroll: the refusal"
	[ "$(vdkey list "aio:$T/new" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keyslots_active"])')" = 1 ] ||
		fail "enroll added a slot after refusing"
	help=$(vdkey --help)
	for o in --kdf-max-memory --kdf-max-time --kdf-max-total-time --allow-expensive-kdf; do
		echo "$help" | grep -q -- "$o" || fail "vdkey --help does not document $o"
	done
}

for sec in ${KDF_SECTIONS:-memory time total mixed create}; do
	"section_$sec"
done
echo ok
