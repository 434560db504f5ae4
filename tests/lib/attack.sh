# Helpers for tests/security/ (bash; source after common.sh).
#
#   layout_of LOWER            vdkey audit's integrity_layout (JSON), for journalforge.py
#   jforge ARGS...             tests/lib/journalforge.py "$IMG" "$LAYOUT" ARGS...
#   qwrite PATTERN OFF [LEN]   one qemu-io write, then a FLUSH (writeback cache
#                              mode: qemu-io's default, writethrough, would send
#                              the write as FUA)
#   qwrite_noflush PATTERN OFF [FLAGS]
#                              a write from a qemu-io that dies before it can
#                              close (no flush); FLAGS e.g. -f for FUA
#   kill9                      kill -9 the tapdisk in TD_PID
#   expect_caught NAME BLOCK PATTERN
#                              serves crypt:aio:$IMG; the open must be refused
#                              with an integrity/tamper message, or BLOCK must
#                              read EIO; PATTERN (the old contents) must never
#                              come back. Sets CAUGHT to "refused" or "EIO". A
#                              variant that is not caught is reported and the
#                              test goes on with the next one;
#   attack_verdict             then fails the test if any variant was not.
#   expect_reads NAME BLOCK PATTERN
#                              serves crypt:aio:$IMG; BLOCK must read PATTERN
[ -n "${TD_SRC:-}" ] || { echo "source tests/lib/common.sh first" >&2; exit 1; }

layout_of() {
	vdkey audit "$1" --json | python3 -c '
import json, sys; print(json.dumps(json.load(sys.stdin)["integrity_layout"]))'
}

jforge() {
	python3 "$TD_SRC/tests/lib/journalforge.py" "$IMG" "$LAYOUT" "$@"
}

qwrite() {
	qemu-io -f raw -t writeback -c "write -P $1 $2 ${3:-4k}" -c flush "$URI" 2>&1 |
		grep -q "wrote" || fail "write $1 at $2"
}

qwrite_noflush() {
	local out
	out=$(qemu-io -f raw -t writeback -c "write ${3:-} -P $1 $2 4k" -c "sigraise 9" "$URI" 2>&1)
	grep -q "wrote" <<<"$out" || fail "write $1 at $2: $out"
}

kill9() {
	kill -9 "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	rm -f "$SOCK"
}

# starts tapdisk on the (forged) image; 0 serving (TD_PID), 1 refused
_serve_forged() {
	local log=$TAPDISK_RUNDIR/tapdisk.log
	_from=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
	# a forgery is not a rollback of the trusted generation: start afresh
	rm -f "$TDCRYPT_STATE_DIR"/*/generation
	rm -f "$SOCK"
	tapdisk serve "crypt:aio:$IMG" --socket "$SOCK" 2>>"$log" &
	TD_PID=$!
	_td_pids="$_td_pids $TD_PID"
	for _ in $(seq 1 100); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$TD_PID" 2>/dev/null || break
		sleep 0.05
	done
	[ -S "$SOCK" ] && return 0
	wait "$TD_PID" 2>/dev/null
	return 1
}

_attack_fails=()
_attack_fail() {
	echo "FAIL: $*" >&2
	_attack_fails+=("$*")
}

attack_verdict() {
	[ ${#_attack_fails[@]} -eq 0 ] && return 0
	echo "${#_attack_fails[@]} attack variant(s) not caught:" >&2
	printf '  - %s\n' "${_attack_fails[@]}" >&2
	exit 1
}

_log_since() {
	tail -c +"$_from" "$TAPDISK_RUNDIR/tapdisk.log"
}

# what the integrity layer logged about the replay, besides its first line
_recovery_said() {
	local said
	said=$(_log_since | grep -E ': integrity: ' | grep -v 'replaying' | head -2 |
		sed 's/^.*integrity: //' | paste -sd '|' -)
	echo "${said:-nothing}"
}

expect_caught() {
	local name=$1 off=$(($2 * 4096)) pat=$3 out
	CAUGHT=""
	if ! _serve_forged; then
		if _log_since | grep -qiE "tamper|integrity"; then
			info "$name: open refused: $(_log_since | grep -iE 'error' | tail -1)"
			CAUGHT=refused
		else
			_attack_fail "$name: the open failed, but not with an integrity message:" \
				"$(_log_since | tail -3)"
		fi
		return
	fi
	out=$(qemu-io -f raw -c "read -P $pat $off 4k" "$URI" 2>&1)
	if grep -q "read 4096/4096" <<<"$out" && ! grep -qi "fail\|mismatch" <<<"$out"; then
		_attack_fail "$name: block $2 was rolled back: the old contents ($pat) were returned" \
			"(recovery said: $(_recovery_said))"
	else
		out=$(qemu-io -f raw -c "read $off 4k" "$URI" 2>&1)
		if grep -q "Input/output error" <<<"$out"; then
			info "$name: block $2 -> EIO (recovery said: $(_recovery_said))"
			CAUGHT=EIO
		else
			_attack_fail "$name: went unnoticed: block $2 read without an error" \
				"(not the old contents; recovery said: $(_recovery_said))"
		fi
	fi
	td_stop "$TD_PID" || true
	rm -f "$SOCK"
}

expect_reads() {
	local name=$1 off=$(($2 * 4096)) pat=$3 out
	_serve_forged || fail "$name: the image does not open: $(_log_since | tail -3)"
	out=$(qemu-io -f raw -c "read -P $pat $off 4k" "$URI" 2>&1)
	grep -q "read 4096/4096" <<<"$out" && ! grep -qi "fail\|mismatch" <<<"$out" ||
		fail "$name: block $2 does not read $pat: $out"
	td_stop "$TD_PID" || fail "$name: stop"
	rm -f "$SOCK"
}
