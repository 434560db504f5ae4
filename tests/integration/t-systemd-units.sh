#!/bin/bash
# test: serial — bind-mounts over /run/tdcrypt
# The systemd units (systemd/*.in, installed by make install):
#  - systemd-analyze verify passes on tapdisk@NAME.service and
#    tapback.service, and systemd-analyze security rates tapdisk@ well;
#  - systemd cannot run as PID 1 here, so the unit's own command lines are
#    run as systemd would run them (tests/lib/unit_cmdline.py: %i,
#    Environment=, EnvironmentFile=, ${SPEC} and $OPTIONS), inside what the
#    unit sets up: its capability bounding set, no_new_privs, LimitMEMLOCK,
#    a session keyring of its own with root's user keyring linked
#    (KeyringMode=shared), the file system read-only but for the run, state
#    and image directories (ProtectSystem=strict, ReadWritePaths=), and a
#    notify socket (Type=notify): READY=1 must come from the main process,
#    and only once the NBD socket is listening;
#  - the key, from the credential "passphrase" by ExecStartPre (vbd-key,
#    vdkey load --once) or loaded beforehand with vdkey load;
#  - a plain tapdisk serve with an abstract $NOTIFY_SOCKET, and without one.
. "$TD_SRC/tests/lib/common.sh"
need systemd-analyze setpriv prlimit keyctl unshare python3 qemu-img qemu-io scdoc
L=$TD_SRC/tests/lib
P=$T/p
U=$P/lib/systemd/system

info "make install PREFIX=$P (the units name the installed programs)"
make -s -C "$TD_SRC" BUILD="$BUILD" PREFIX="$P" sysconfdir="$P/etc" install >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; fail "make install"; }

info "systemd-analyze verify"
for u in tapdisk@vm1.service tapback.service; do
	out=$(MANPATH="$P/share/man:" systemd-analyze verify "$U/$u" 2>&1) || fail "systemd-analyze verify $u: $out"
	[ -z "$out" ] || fail "systemd-analyze verify $u says: $out"
	echo "   $u: verified"
done

info "systemd-analyze security"
out=$(systemd-analyze security --offline=yes "$U/tapdisk@vm1.service" 2>&1) || fail "systemd-analyze security: $out"
score=$(echo "$out" | sed -n 's/.*Overall exposure level for tapdisk@vm1.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure level in: $out"
echo "   tapdisk@vm1.service: exposure $score ($(echo "$out" | tail -1 | awk '{print $NF, $(NF-1)}'))"
python3 -c "import sys; sys.exit(0 if float('$score') <= 3.5 else 1)" ||
	fail "tapdisk@.service exposure $score is above 3.5: $(echo "$out" | grep '✗')"
out=$(systemd-analyze security --offline=yes "$U/tapback.service" 2>&1 | tail -1)
echo "   tapback.service: ${out#→ }"

get() { python3 "$L/unit_cmdline.py" "$U/tapdisk@.service" vm1 get "$1"; }
[ "$(get Type)" = notify ] || fail "tapdisk@ is not Type=notify"
[ "$(get KeyringMode)" = shared ] || fail "tapdisk@ KeyringMode is not shared"
[ "$(get LimitMEMLOCK)" = infinity ] || fail "tapdisk@ LimitMEMLOCK is not infinity"
[ "$(get NoNewPrivileges)" = yes ] || fail "tapdisk@ does not set NoNewPrivileges"
caps=$(get CapabilityBoundingSet | tr ' ' '\n' | sed 's/^CAP_//' | tr 'A-Z' 'a-z' | sed 's/^/+/' | paste -sd,)
echo "   bounding set: $caps"

# A VBD as an admin would write it: an image in a directory of another
# user's (mode 0700), the socket in the test's run directory.
mkdir -p "$P/etc/tdcrypt/vbd" "$T/imgs" "$T/creds"
IMG=$T/imgs/vm1.qcow2
qemu-img create -q -f qcow2 "$IMG" 256M
head -c 32 /dev/urandom | base64 >"$T/creds/passphrase"
vdkey format "qcow2:$IMG" --key-file "$T/creds/passphrase" --pbkdf pbkdf2 --pbkdf-iterations 1000 \
	>/dev/null || fail "vdkey format"
td_on_exit "vdkey unload qcow2:$IMG >/dev/null 2>&1"
chown -R nobody: "$T/imgs"
chmod 0700 "$T/imgs"
SOCK=$TAPDISK_RUNDIR/vm1.sock
cat >"$P/etc/tdcrypt/vbd/vm1.conf" <<EOC
# test VBD
SPEC=crypt:qcow2:$IMG
SOCKET=$SOCK
OPTIONS=--workers 2 --export-name vm1
EOC
mapfile -d '' pre < <(python3 "$L/unit_cmdline.py" "$U/tapdisk@.service" vm1 exec ExecStartPre)
mapfile -d '' cmd < <(python3 "$L/unit_cmdline.py" "$U/tapdisk@.service" vm1 exec ExecStart)
mapfile -d '' uenv < <(python3 "$L/unit_cmdline.py" "$U/tapdisk@.service" vm1 env)
echo "   ExecStartPre: ${pre[*]}"
echo "   ExecStart:    ${cmd[*]}"
want=("$P/libexec/tdcrypt/tapdisk" serve "crypt:qcow2:$IMG" --socket "$SOCK" --workers 2 --export-name vm1)
[ "${cmd[*]}" = "${want[*]}" ] || fail "ExecStart is '${cmd[*]}', not '${want[*]}'"

# LimitMEMLOCK=infinity needs CAP_SYS_RESOURCE in our bounding set (a
# container may lack it); without it the limit stays and only the key
# material is locked, as the tapdisk's log then says
memlock=(prlimit --memlock=unlimited:unlimited)
if ! prlimit --memlock=unlimited:unlimited true 2>/dev/null; then
	memlock=()
	echo "   (this machine cannot lift RLIMIT_MEMLOCK: LimitMEMLOCK=infinity is not emulated)"
fi

# unit_wrap [NAME=VALUE...] -- sets W, the command that runs a command as
# the unit would: its environment, bounding set, no_new_privs, memlock
# limit, a session keyring of its own that links root's user keyring, and
# / read-only but for the writable paths. Every step execs the next, so the
# command keeps the pid "${W[@]}" starts with (systemd's main process).
mkdir -p /run/tdcrypt
unit_wrap() {
	W=(env "${uenv[@]}" CREDENTIALS_DIRECTORY="${CREDS:-}" "$@"
		unshare --mount --propagation private --
		sh -c 'for d in "$T" /run/tdcrypt; do mount --bind "$d" "$d" || exit 1; done
		       mount -o remount,bind,ro / || exit 1
		       exec "$@"' sh
		setpriv --bounding-set "-all,$caps" --no-new-privs
		"${memlock[@]}"
		keyctl session - sh -c 'keyctl link @u @s >/dev/null && exec "$@"' sh)
}
as_unit() {
	unit_wrap
	"${W[@]}" "$@"
}
export T

run_unit() {
	local how=$1 ns=$2
	info "tapdisk@vm1 ($how; notify socket $ns)"
	if [ -n "${CREDS:-}" ]; then
		as_unit "${pre[@]}" 2>&1 | sed 's/^/   ExecStartPre: /'
		[ "${PIPESTATUS[0]}" = 0 ] || fail "ExecStartPre failed"
	fi
	python3 "$L/notify_listen.py" "$ns" "$SOCK" 30 >"$T/notify.out" &
	local lpid=$!
	for _ in $(seq 600); do grep -q listening "$T/notify.out" && break; sleep 0.05; done
	grep -q listening "$T/notify.out" || fail "the notify listener did not start in 30 s"
	unit_wrap NOTIFY_SOCKET="$ns"
	"${W[@]}" "${cmd[@]}" 2>>"$TAPDISK_RUNDIR/tapdisk.log" &
	TD_PID=$!
	_td_pids="$_td_pids $TD_PID"
	wait "$lpid" || fail "no READY=1 while the NBD socket listens: $(cat "$T/notify.out")"
	local got
	got=$(tail -1 "$T/notify.out")
	echo "   received: $got"
	[[ $got == "pid=$TD_PID nbd=ok READY=1 STATUS=serving crypt:qcow2:$IMG on $SOCK"* ]] ||
		fail "the notification did not come from the main process ($TD_PID) once serving: $got"
	qemu-io -f raw -c "write -P 0x3c 0 1M" -c "read -P 0x3c 0 1M" "$(uri_of "$SOCK")" >/dev/null ||
		fail "I/O through the unit's tapdisk"
	grep "running as uid" "$TAPDISK_RUNDIR/tapdisk.log" | tail -1 | sed 's/^/   /'
	if [ ${#memlock[@]} -gt 0 ]; then
		grep -q "all of this tapdisk's memory is locked" "$TAPDISK_RUNDIR/tapdisk.log" ||
			fail "LimitMEMLOCK=infinity did not lock the tapdisk's memory"
	fi
	td_stop "$TD_PID" || fail "tapdisk did not exit 0 on SIGTERM (systemctl stop)"
	[ ! -e "$SOCK" ] || fail "the NBD socket outlived the tapdisk"
	echo "   stopped with SIGTERM: exit 0, sockets removed"
	: >"$TAPDISK_RUNDIR/tapdisk.log"
}

# 1. the key from the credential "passphrase": ExecStartPre loads it --once
desc=$(key_desc "qcow2:$IMG")
CREDS=$T/creds run_unit "key from the credential 'passphrase'" "$T/notify.sock"
! keyctl search @u user "$desc" >/dev/null 2>&1 || fail "the --once key is still in the keyring after the tapdisk read it"
echo "   the key loaded by ExecStartPre was consumed by the tapdisk (--once)"

# 2. the key loaded beforehand by the admin (vdkey load: root's user keyring)
vdkey load "qcow2:$IMG" --key-file "$T/creds/passphrase" >/dev/null || fail "vdkey load"
out=$(as_unit "${pre[@]}") || fail "ExecStartPre without a credential: $out"
echo "   ExecStartPre: $out"
CREDS="" run_unit "key loaded with vdkey load" "@tdcrypt-test-$$"
keyctl search @u user "$desc" >/dev/null || fail "a plain vdkey load key disappeared"
vdkey unload "qcow2:$IMG" >/dev/null

info "a conf without SPEC= is refused with a clear message"
out=$(env -u SPEC "$P/libexec/tdcrypt/vbd-key" vm2 2>&1) && fail "vbd-key without SPEC passed"
echo "$out" | grep -q "no SPEC= in $P/etc/tdcrypt/vbd/vm2.conf" || fail "message: $out"
echo "   $out"

info "tapdisk serve: an abstract notify socket; none; a bad one"
truncate -s 64M "$T/plain.img"
python3 "$L/notify_listen.py" "@tdcrypt-plain-$$" "$T/plain.sock" 30 >"$T/notify.out" &
lpid=$!
for _ in $(seq 600); do grep -q listening "$T/notify.out" && break; sleep 0.05; done
grep -q listening "$T/notify.out" || fail "the notify listener did not start in 30 s"
NOTIFY_SOCKET="@tdcrypt-plain-$$" td_serve "aio:$T/plain.img" "$T/plain.sock"
wait "$lpid" || fail "abstract notify socket: $(cat "$T/notify.out")"
echo "   $(tail -1 "$T/notify.out")"
td_stop "$TD_PID" || fail "tapdisk exit"
td_serve "aio:$T/plain.img" "$T/plain.sock"
td_stop "$TD_PID" || fail "tapdisk without NOTIFY_SOCKET"
NOTIFY_SOCKET=$T/nobody-listens td_serve "aio:$T/plain.img" "$T/plain.sock"
td_stop "$TD_PID" || fail "tapdisk with a dead NOTIFY_SOCKET"
grep -q "cannot reach \$NOTIFY_SOCKET" "$TAPDISK_RUNDIR/tapdisk.log" || fail "no warning about the dead notify socket"
echo "   without NOTIFY_SOCKET, and with one nobody listens on (a warning): served, exit 0"
echo ok
