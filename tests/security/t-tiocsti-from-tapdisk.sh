#!/bin/bash
# test: serial — adds a system user (useradd locks /etc/passwd)
# Attack: a compromised tapdisk types into the terminal it was started from.
# An administrator runs 'tapdisk serve ... --user tapdisk' from a root
# shell; the tapdisk keeps that terminal as its controlling terminal and
# on fd 0. Code running in it (a bug exploited through a hostile image or
# NBD client) calls ioctl(0, TIOCSTI, c) for each character of a command:
# the root shell reads it as typed input once the tapdisk exits. The
# sandbox must refuse every ioctl request a tapdisk does not need, in
# every thread (the worker threads were started before the filter).
#
#   control    the attack works here: a process started from a terminal,
#              as an unprivileged user, pushes a keystroke into it
#              (tests/tools/inject_tiocsti makes each thread of a running
#              process call the ioctl)
#   tapdisk    a real tapdisk, started from a terminal, as root and with
#              --user: every thread is under the filter, and TIOCSTI from
#              every thread fails with EPERM; nothing reaches the terminal;
#              the tapdisk serves on
#   probe      tapdisk's sandbox code applied to tests/tools/sandbox_probe:
#              TIOCSTI fails with EPERM in both profiles (files, cluster),
#              with and without the uid change; without the filter it works
#   needed     what the filter still allows is what tapdisk uses: on a
#              loop device, discard and write zeroes (BLKDISCARD,
#              BLKZEROOUT) and a reopen at unpause (BLKGETSIZE64) work
# Sanitizer builds install no filter: the EPERM assertions are skipped
# there (said in the log), the rest runs.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io setpriv python3 useradd losetup
[ "$(id -u)" = 0 ] || skip "needs root to create users, ptrace and loop devices"
[ "$(uname -m)" = x86_64 ] || skip "tests/tools/inject_tiocsti is x86-64 only"
case "$BUILD" in *san*) SAN=1 ;; *) SAN=0 ;; esac
san_note() { echo "sanitizer build ($BUILD): no seccomp filter; $1 not checked"; }
U=tdtest1
getent passwd $U >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin $U ||
	fail "useradd $U"
UID1=$(id -u $U)
chmod 0755 "$T" "$TAPDISK_RUNDIR"
PROBE=$TD_TOOLS/sandbox_probe
INJECT=$TD_TOOLS/inject_tiocsti
[ -x "$PROBE" ] && [ -x "$INJECT" ] || fail "tests/tools not built ($TD_TOOLS)"
KEY=$T/key
printf 'tiocsti test' >"$KEY"

# from_terminal NAME COMMAND... -- runs COMMAND with a new pty as its
# controlling terminal and fds 0-1; sets TTY_PID, the screen is $T/NAME.screen
from_terminal() {
	local name=$1
	shift
	python3 "$TD_SRC/tests/lib/ptyrun.py" "$T/$name.pid" "$T/$name.screen" "$@" \
		2>>"$TAPDISK_RUNDIR/tapdisk.log" &
	_td_pids="$_td_pids $!"
	local i
	for i in $(seq 1 100); do [ -s "$T/$name.pid" ] && break; sleep 0.05; done
	TTY_PID=$(cat "$T/$name.pid") || fail "$name did not start"
	_td_pids="$_td_pids $TTY_PID"
}

screen_has_x() { sleep 0.2; grep -q X "$T/$1.screen"; }

info "control: a process started from a terminal, as $U, can push keystrokes into it"
from_terminal control setpriv --reuid=$U --regid=$U --clear-groups --inh-caps=-all sleep 60
sleep 0.3
out=$("$INJECT" "$TTY_PID") || fail "inject_tiocsti failed: $out"
echo "$out"
echo "$out" | grep -q ": ok$" || fail "TIOCSTI does not work on this host, the test proves nothing: $out"
screen_has_x control || fail "the injected keystroke did not reach the terminal"
kill "$TTY_PID"

serve_from_terminal() { # NAME [tapdisk options]
	local name=$1
	shift
	truncate -s 64M "$T/$name.img"
	crypt_image "aio:$T/$name.img" "$KEY"
	from_terminal "$name" tapdisk serve "crypt:aio:$T/$name.img" --socket "$T/$name.sock" "$@"
	wait_for_socket "$T/$name.sock"
	qemu-io -f raw -c "write -P 0x5a 0 4M" "$(uri_of "$T/$name.sock")" >/dev/null ||
		fail "$name: write"
}

attack_tapdisk() { # NAME
	local name=$1 t out
	if [ $SAN = 1 ]; then
		san_note "TIOCSTI from the tapdisk"
		return
	fi
	out=$("$INJECT" "$TTY_PID") || fail "$name: inject_tiocsti failed: $out"
	echo "$out"
	screen_has_x "$name" && fail "$name: keystrokes reached the terminal: '$(cat "$T/$name.screen")'"
	[ "$(echo "$out" | grep -c ": Operation not permitted$")" = "$(echo "$out" | wc -l)" ] ||
		fail "$name: TIOCSTI was not refused in every thread"
	for t in /proc/"$TTY_PID"/task/*; do
		grep -q "^Seccomp:[[:space:]]*2" "$t/status" ||
			fail "$name: thread ${t##*/} runs without the seccomp filter"
	done
	qemu-io -f raw -c "read -P 0x5a 0 4M" "$(uri_of "$T/$name.sock")" | grep -q "read 4194304" ||
		fail "$name: does not serve after the attempt"
	tap-ctl pause -s "$T/$name.sock" && tap-ctl unpause -s "$T/$name.sock" ||
		fail "$name: pause/unpause after the attempt"
	qemu-io -f raw -c "read -P 0x5a 0 4M" "$(uri_of "$T/$name.sock")" | grep -q "read 4194304" ||
		fail "$name: data after unpause"
}

info "tapdisk serve --user $U, started from a terminal: TIOCSTI from every thread fails with EPERM"
serve_from_terminal td-user --user $U
attack_tapdisk td-user
tap-ctl destroy -s "$T/td-user.sock" || fail "destroy td-user"

info "tapdisk serve as root, started from a terminal: the same"
serve_from_terminal td-root
attack_tapdisk td-root
tap-ctl destroy -s "$T/td-root.sock" || fail "destroy td-root"

info "probe: tapdisk's sandbox code refuses TIOCSTI in both profiles; without a filter it works"
probe() { # expected-result probe-options...
	local want=$1 out
	shift
	out=$("$PROBE" "$@" ioctl-tiocsti fork) || fail "sandbox_probe $*: $out"
	echo "sandbox_probe $*: $(echo "$out" | tr '\n' ';')"
	echo "$out" | grep -qx "ioctl-tiocsti: $want" || fail "sandbox_probe $*: expected '$want': $out"
}
probe ok --profile none
probe ok --uid "$UID1" --gid "$UID1" --profile none
if [ $SAN = 1 ]; then
	san_note "the probe's EPERM"
else
	for p in files cluster; do
		probe "Operation not permitted" --profile $p
		probe "Operation not permitted" --uid "$UID1" --gid "$UID1" --profile $p
	done
fi

info "what the filter allows is what tapdisk needs: a loop device with discard, write zeroes, unpause"
truncate -s 128M "$T/blk"
LOOP=$(losetup -f --show "$T/blk") || fail "losetup"
td_on_exit "losetup -d $LOOP"
crypt_image "aio:$LOOP" "$KEY"
td_serve "crypt:aio:$LOOP" "$T/blk.sock" --user $U
URI=$(uri_of "$T/blk.sock")
qemu-io -f raw -c "write -P 0x61 0 8M" -c "discard 0 1M" -c "write -z 1M 1M" -c "write -z -u 2M 1M" \
	-c flush "$URI" >/dev/null || fail "write / discard / write zeroes on a block device"
tap-ctl pause -s "$T/blk.sock" && tap-ctl unpause -s "$T/blk.sock" || fail "pause/unpause on a block device"
out=$(qemu-io -f raw -c "read -P 0 0 3M" -c "read -P 0x61 3M 5M" "$URI") || fail "read back: $out"
[ "$(echo "$out" | grep -c "^read ")" = 2 ] || fail "data after discard / write zeroes / unpause: $out"
grep "^tapdisk\[$TD_PID\]" "$TAPDISK_RUNDIR/tapdisk.log" | grep -E "not permitted|error" &&
	fail "errors in the tapdisk log"
td_stop "$TD_PID" || fail "the loop-device tapdisk did not stop cleanly"
echo ok
