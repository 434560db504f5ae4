#!/bin/bash
# Runs inside the systemd VM of tests/systemd/vm.sh as the oneshot unit
# sdvm-test.service (after multi-user.target), with our Debian package
# installed and, prepared by vm.sh as the README's "Installing" section says:
#   vm1: /etc/tdcrypt/vbd/vm1.conf  SPEC=crypt:qcow2:/srv/vm1.qcow2, the key
#        as the credential "passphrase" (a drop-in with LoadCredential=)
#   vm2: /etc/tdcrypt/vbd/vm2.conf  SPEC=crypt:aio:/srv/vm2.img, the key
#        loaded beforehand by root with vdkey load (no credential)
# It checks the unit's Type=notify/Restart=, that activation waits for the
# tapdisk's READY=1 (a control where systemd drops it times out), the
# tapdisk's uid and seccomp filter, the key hand-off both ways, I/O with
# nbdcopy and qemu-io, restart after SIGKILL, stop, ciphertext on disk, and
# a client unit ordered after the VBD.
# Every check prints a line SYSTEMDVM: ...; the last line is
# SYSTEMDVM-RESULT=PASS or SYSTEMDVM-RESULT=FAIL: WHY (with the units'
# journal before it). Then the VM powers off.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
T0=$(date +%s)

say() { echo "SYSTEMDVM: [$(($(date +%s) - T0))s] $*"; }
finish() {
	sync
	systemctl --no-block poweroff
	exit "$1"
}
fail() {
	say "FAIL: $*"
	for u in tapdisk@vm1 tapdisk@vm2; do
		echo "---- journalctl -u $u"
		journalctl -u "$u" --no-pager -o short-monotonic | tail -n 60
		echo "---- systemctl status $u"
		systemctl status "$u" --no-pager -l | head -n 30
	done
	echo "SYSTEMDVM-RESULT=FAIL: $*"
	finish 1
}
trap 'fail "unexpected exit of the test script (line $LINENO)"' ERR

uri() { echo "nbd+unix:///?socket=/run/tapdisk/$1.sock"; }
prop() { systemctl show -P "$2" "tapdisk@$1.service"; }

# qio NAME ARGS...: qemu-io on the VBD's socket; fails on a pattern mismatch
qio() {
	local name=$1 out
	shift
	out=$(qemu-io -f raw "$@" "$(uri "$name")" 2>&1) || fail "qemu-io $* on $name: $out"
	! echo "$out" | grep -q "Pattern verification failed" || fail "qemu-io $* on $name: $out"
}

# wait_restart NAME OLDPID: systemd restarts the killed tapdisk
wait_restart() {
	local name=$1 old=$2 pid st
	for _ in $(seq 1 120); do
		st=$(systemctl is-active "tapdisk@$name" || true)
		pid=$(prop "$name" MainPID)
		if [ "$st" = active ] && [ "$pid" != 0 ] && [ "$pid" != "$old" ]; then
			return 0
		fi
		sleep 0.5
	done
	fail "tapdisk@$name was not restarted after SIGKILL (state $st, MainPID $pid)"
}

say "systemd is up ($(systemctl is-system-running || true)); $(systemctl --version | head -n 1)"
dpkg-query -W -f='${Package} ${Version}\n' tdcrypt tdcrypt-xen | sed 's/^/SYSTEMDVM: installed: /'

# ---- tapback.service (tdcrypt-xen): enabled, skipped at boot on a host
# without Xen (ConditionPathExists=/proc/xen/capabilities), not failed
[ "$(systemctl is-enabled tapback.service)" = enabled ] || fail "tapback.service is $(systemctl is-enabled tapback.service), not enabled"
[ "$(systemctl show -P ConditionResult tapback.service)" = no ] ||
	fail "tapback.service: ConditionResult=$(systemctl show -P ConditionResult tapback.service) on a host without Xen"
st=$(systemctl is-active tapback.service || true)
[ "$st" = inactive ] || fail "tapback.service is $st on a host without Xen"
say "tapback.service: enabled by the package, skipped at boot without Xen (condition), inactive, not failed"

# ---- the unit as installed by the package
[ "$(prop vm1 Type)" = notify ] || fail "tapdisk@vm1 is Type=$(prop vm1 Type), not notify"
[ "$(prop vm1 Restart)" = on-failure ] || fail "tapdisk@vm1 has Restart=$(prop vm1 Restart)"
[ "$(prop vm1 NotifyAccess)" = main ] || fail "tapdisk@vm1 has NotifyAccess=$(prop vm1 NotifyAccess)"
[ "$(systemctl is-active tapdisk@vm1 || true)" = inactive ] || fail "tapdisk@vm1 runs before the test starts it"
say "tapdisk@vm1: Type=notify NotifyAccess=main Restart=on-failure, inactive"

# ---- READY is what makes it active. Control: a runtime drop-in runs the
# same tapdisk under a shell that is the unit's main process, so systemd
# drops the tapdisk's READY=1 (NotifyAccess=main): the start must time out
# although the tapdisk serves (systemd forces NotifyAccess=none back to
# main for Type=notify, so that setting cannot be the control)
mkdir -p /run/systemd/system/tapdisk@vm1.service.d
cat >/run/systemd/system/tapdisk@vm1.service.d/noready.conf <<'EOF'
[Service]
ExecStart=
ExecStart=/bin/sh -c '/usr/libexec/tdcrypt/tapdisk serve "$$SPEC" --socket "$$SOCKET" $$OPTIONS; exit $$?'
TimeoutStartSec=15
Restart=no
EOF
systemctl daemon-reload
systemctl start tapdisk@vm1 2>/dev/null && fail "tapdisk@vm1 became active with the tapdisk's READY dropped"
journalctl -u tapdisk@vm1 --no-pager | grep -q "reception only permitted for main PID" ||
	fail "in the control, systemd logged no (dropped) notification from the tapdisk"
journalctl -u tapdisk@vm1 --no-pager | grep -q "timed out" ||
	fail "in the control, the start did not time out"
rm -r /run/systemd/system/tapdisk@vm1.service.d
systemctl daemon-reload
systemctl reset-failed tapdisk@vm1
say "control: with the tapdisk's READY=1 dropped (not the main PID) the start timed out after 15 s: activation waits for READY"

# ---- vm1: start; the key comes from the credential
t=$(date +%s%N)
systemctl start tapdisk@vm1 || fail "systemctl start tapdisk@vm1"
ms=$((($(date +%s%N) - t) / 1000000))
[ "$(systemctl is-active tapdisk@vm1)" = active ] || fail "tapdisk@vm1 is not active"
# Type=notify: start returned only after READY=1 (else it would have timed
# out); tapdisk sends STATUS= with it, and the socket accepts at once
status=$(prop vm1 StatusText)
case "$status" in
"serving crypt:qcow2:/srv/vm1.qcow2 on /run/tapdisk/vm1.sock"*) ;;
*) fail "tapdisk@vm1 StatusText is '$status': no READY/STATUS notification from tapdisk" ;;
esac
size=$(nbdinfo --size "$(uri vm1)" 2>&1) || fail "nbdinfo right after start: $size"
# 64 MiB image less the integrity metadata; the test writes up to 48M+128k
[ "$size" -gt 50462720 ] && [ "$size" -le 67108864 ] || fail "vm1 size $size, expected 48-64 MiB"
pid1=$(prop vm1 MainPID)
exe=$(readlink "/proc/$pid1/exe")
[ "$exe" = /usr/libexec/tdcrypt/tapdisk ] || fail "MainPID $pid1 is $exe"
uid=$(awk '/^Uid:/{print $2}' "/proc/$pid1/status")
[ "$uid" != 0 ] || fail "the tapdisk of vm1 still runs as root"
seccomp=$(awk '/^Seccomp:/{print $2}' "/proc/$pid1/status")
[ "$seccomp" = 2 ] || fail "the tapdisk of vm1 runs without a seccomp filter (Seccomp: $seccomp)"
say "tapdisk@vm1 active after ${ms} ms (StatusText: $status); MainPID $pid1 is $exe, uid $uid, seccomp filter on; nbdinfo: $size bytes"
say "systemd-analyze security tapdisk@vm1: $(systemd-analyze security tapdisk@vm1.service --no-pager 2>&1 | tail -n 1)"
# --once: the tapdisk took the key out of root's user keyring
if keyctl show @u 2>/dev/null | grep -q 'tdcrypt:'; then
	fail "a tdcrypt key is still in root's user keyring after the start: $(keyctl show @u)"
fi
say "the credential's key was loaded by vbd-key (vdkey load --once) and consumed: root's keyring holds no tdcrypt key"

# ---- write, read back (qemu-io and nbdcopy)
qio vm1 -c "write -P 0x5a 0 1M" -c "write -P 0xa5 40M 64k" -c "flush"
head -c 4M /dev/urandom >/tmp/rand
# nbdcopy writes the 4 MiB at offset 0 of the (larger) disk
out=$(nbdcopy --flush /tmp/rand "$(uri vm1)" 2>&1) || fail "nbdcopy to vm1: $out"
nbdcopy "$(uri vm1)" - 2>/dev/null | head -c 4194304 | cmp -s - /tmp/rand ||
	fail "nbdcopy: the 4 MiB read back from vm1 differ from what was written"
qio vm1 -c "read -P 0xa5 40M 64k"
say "vm1: wrote 4 MiB random (nbdcopy) and a 64 KiB pattern (qemu-io), read both back"

# ---- SIGKILL: systemd restarts it (Restart=on-failure), the data is there
n0=$(prop vm1 NRestarts)
kill -KILL "$pid1"
wait_restart vm1 "$pid1"
pid1b=$(prop vm1 MainPID)
n1=$(prop vm1 NRestarts)
[ "$n1" -gt "$n0" ] || fail "NRestarts $n0 -> $n1"
nbdcopy "$(uri vm1)" - 2>/dev/null | head -c 4194304 | cmp -s - /tmp/rand ||
	fail "after the restart the 4 MiB of vm1 differ from what was written"
qio vm1 -c "read -P 0xa5 40M 64k"
qio vm1 -c "write -P 0x3c 48M 128k" -c "flush"
say "SIGKILL of $pid1: systemd restarted tapdisk@vm1 (MainPID $pid1b, NRestarts $n0 -> $n1), the key again from the credential; data read back, a new write taken"

# ---- stop: SIGTERM drains and exits 0
systemctl stop tapdisk@vm1 || fail "systemctl stop tapdisk@vm1"
st=$(systemctl is-active tapdisk@vm1 || true)
[ "$st" = inactive ] || fail "tapdisk@vm1 is $st after stop"
[ "$(prop vm1 Result)" = success ] || fail "tapdisk@vm1 Result=$(prop vm1 Result) after stop"
! kill -0 "$pid1b" 2>/dev/null || fail "the tapdisk $pid1b still runs after stop"
# the image itself holds ciphertext: qemu-io on the qcow2 without our layer
out=$(qemu-io -f qcow2 -r -U -c "read -P 0xa5 40M 64k" /srv/vm1.qcow2 2>&1) || true
echo "$out" | grep -q "Pattern verification failed" ||
	fail "the plain qcow2 shows the written pattern (not encrypted?): $out"
say "tapdisk@vm1 stopped (inactive, Result=success); qemu-io on the bare qcow2 finds no plaintext"

# ---- start again, pulled in by a unit ordered after it (Requires=,
# After=tapdisk@vm1) that reads the disk at once: Type=notify makes it wait
# for READY; everything written survived the stop
systemctl start sdvm-consumer@vm1 ||
	fail "systemctl start sdvm-consumer@vm1 (Requires=tapdisk@vm1): $(journalctl -u sdvm-consumer@vm1 --no-pager | tail -n 5)"
[ "$(systemctl is-active tapdisk@vm1)" = active ] || fail "sdvm-consumer@vm1 did not pull in tapdisk@vm1"
csize=$(journalctl -u sdvm-consumer@vm1 -o cat --no-pager | grep -a -x '[0-9]*' | tail -n 1)
[ "$csize" = "$size" ] || fail "sdvm-consumer@vm1 read the size '$csize', expected $size"
say "sdvm-consumer@vm1 (Requires=, After=tapdisk@vm1) pulled in tapdisk@vm1 and read it at once (nbdinfo --size: $csize)"
nbdcopy "$(uri vm1)" - 2>/dev/null | head -c 4194304 | cmp -s - /tmp/rand ||
	fail "after stop and start the 4 MiB of vm1 differ"
qio vm1 -c "read -P 0xa5 40M 64k" -c "read -P 0x3c 48M 128k"
systemctl stop tapdisk@vm1 || fail "systemctl stop tapdisk@vm1 (second time)"
say "tapdisk@vm1 started again: all the data read back; stopped"

# ---- vm2: the key loaded by root beforehand (KeyringMode=shared)
out=$(systemctl start tapdisk@vm2 2>&1) && fail "tapdisk@vm2 started without a key"
journalctl -u tapdisk@vm2 --no-pager | grep -q "no key loaded for image" ||
	fail "tapdisk@vm2 failed without a key but did not say why"
# it would retry every RestartSec until the start limit: stop it first
systemctl stop tapdisk@vm2
systemctl reset-failed tapdisk@vm2 || true
vdkey load crypt:aio:/srv/vm2.img --key-file /etc/tdcrypt/keys/vm2.pw >/dev/null ||
	fail "vdkey load vm2"
keyctl show @u 2>/dev/null | grep -q 'tdcrypt:' ||
	fail "vdkey load put no tdcrypt key in root's user keyring: $(keyctl show @u 2>&1)"
systemctl start tapdisk@vm2 || fail "systemctl start tapdisk@vm2 (key loaded with vdkey load)"
qio vm2 -c "write -P 0x77 0 2M" -c "flush"
qio vm2 -c "read -P 0x77 0 2M"
pid2=$(prop vm2 MainPID)
kill -KILL "$pid2"
wait_restart vm2 "$pid2"
qio vm2 -c "read -P 0x77 0 2M"
systemctl stop tapdisk@vm2 || fail "systemctl stop tapdisk@vm2"
[ "$(prop vm2 Result)" = success ] || fail "tapdisk@vm2 Result=$(prop vm2 Result) after stop"
vdkey unload crypt:aio:/srv/vm2.img >/dev/null 2>&1 || true
say "tapdisk@vm2 (crypt:aio): refused without a key; with root's vdkey load it served, was restarted after SIGKILL, read back, stopped"

echo "SYSTEMDVM-RESULT=PASS"
finish 0
