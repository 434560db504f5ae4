#!/bin/bash
# test: serial — adds system users (useradd locks /etc/passwd)
# Isolation of tapdisks run as a fixed user (tap-ctl create --user): one
# runs as that user inside a seccomp allow-list (no new sockets, no
# processes: checked with tests/tools/sandbox_probe, which applies the very
# same sandbox code); it cannot be unpaused onto another VBD's image or a
# host file; a second VBD's tapdisk user cannot read the first one's key;
# neither another user nor the tapdisk's own user can pause or destroy it
# over the control socket. Data stays intact. (The default, a uid of its
# own per VBD, is tests/security/t-shared-vbd-uid.sh.)
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl setpriv python3 useradd
[ "$(id -u)" = 0 ] || skip "needs root to create users and switch to them"
case "$BUILD" in *san*) SAN=1 ;; *) SAN=0 ;; esac
for u in tdtest1 tdtest2; do
	getent passwd $u >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin $u ||
		fail "useradd $u"
done
chmod 0755 "$T" "$TAPDISK_RUNDIR"
KEY=$T/key
printf 'isolation test' >"$KEY"
for i in 1 2; do
	truncate -s 64M "$T/img$i"
	vdkey format "aio:$T/img$i" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
		fail format
	vdkey load "aio:$T/img$i" --key-file "$KEY" >/dev/null || fail load
	td_on_exit "vdkey unload aio:$T/img$i >/dev/null 2>&1"
done
U1=$(tap-ctl create --user tdtest1 -a "crypt:aio:$T/img1") || fail "create as tdtest1"
U2=$(tap-ctl create --user tdtest2 -a "crypt:aio:$T/img2") || fail "create as tdtest2"
S1=${U1#nbd+unix:///?socket=}
P1=$(tap-ctl list --json | python3 -c "import json,sys
print([e['pid'] for e in json.load(sys.stdin) if e['socket']=='$S1'][0])")

info "the tapdisk runs as tdtest1"
uid1=$(id -u tdtest1)
awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$P1/status" | grep -qx "$uid1 $uid1 $uid1 $uid1" ||
	fail "uids: $(grep ^Uid: /proc/$P1/status)"
grep -q "^NoNewPrivs:.*1" "/proc/$P1/status" || fail "no_new_privs not set"
if [ $SAN = 0 ]; then grep -q "^Seccomp:.*2" "/proc/$P1/status" || fail "no seccomp filter"; fi
qemu-io -f raw -c "write -P 0x3c 0 1M" "$U1" >/dev/null || fail "write"

ctl() { # ctl SOCKETFILE COMMAND [as-user]
	local run=()
	[ -n "${3:-}" ] && run=(setpriv --reuid="$3" --regid="$3" --clear-groups)
	"${run[@]}" /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.strerror); sys.exit(0)
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().read())' "$1" "$2"
}
CTL1=$(ls "$TAPDISK_RUNDIR"/tapdisk.*.ctl | while read -r c; do
	ctl "$c" info | grep -q "pid=$P1$" && echo "$c"; done)
[ -n "$CTL1" ] || fail "no control socket for $P1"

info "the sandbox: no network socket, no new process, no file opened by path"
if [ $SAN = 0 ]; then
	out=$("$TD_TOOLS/sandbox_probe" --uid "$uid1" --profile files socket-inet fork open-ro /etc/passwd)
	echo "$out"
	echo "$out" | grep -q "socket-inet.*: Operation not permitted" || fail "could open an inet socket"
	echo "$out" | grep -q "fork.*: Operation not permitted" || fail "could fork"
	echo "$out" | grep -q "open-ro /etc/passwd: Operation not permitted" || fail "could open a file"
fi
chmod 0600 "$T/img2"
out=$(tap-ctl pause -p "$P1" && tap-ctl unpause -p "$P1" -a "crypt:aio:$T/img2" 2>&1) &&
	fail "opened another VBD's image: $out"
echo "$out" | grep -qE "not the image this tapdisk serves|locked by another process" || fail "message: $out"
out=$(tap-ctl unpause -p "$P1" -a "aio:/etc/shadow" 2>&1) && fail "opened /etc/shadow"
echo "$out" | grep -q "must stack the same drivers" || fail "message: $out"
tap-ctl unpause -p "$P1" || fail "reopen its own image after a pause"
qemu-io -f raw -c "read -P 0x3c 0 1M" "$U1" | grep -q "read 1048576" || fail "data not intact"

info "another VBD's tapdisk user cannot read this VBD's key"
KID=$(keyctl search @u user "$(key_desc "aio:$T/img1")") || fail "key not in root's keyring"
out=$(setpriv --reuid=tdtest2 --regid=tdtest2 --clear-groups keyctl session - keyctl pipe "$KID" 2>&1 |
	od -An -tx1 | head -c 40)
[ -z "$(setpriv --reuid=tdtest2 --regid=tdtest2 --clear-groups keyctl session - keyctl pipe "$KID" 2>/dev/null)" ] ||
	fail "tdtest2 read the key"
[ -z "$(setpriv --reuid=tdtest1 --regid=tdtest1 --clear-groups keyctl session - keyctl pipe "$KID" 2>/dev/null)" ] ||
	fail "the key is readable outside the loading session"

info "neither another user nor the tapdisk's own user can pause or destroy it"
out=$(ctl "$CTL1" pause tdtest2)
echo "$out" | grep -qiE "permission denied" || fail "tdtest2 could talk to tdtest1's tapdisk: $out"
chmod 0666 "$CTL1" # even when the socket file lets anyone in, SO_PEERCRED refuses
out=$(ctl "$CTL1" destroy tdtest2)
echo "$out" | grep -q "error: permission denied" || fail "SO_PEERCRED check: $out"
kill -0 "$P1" || fail "tapdisk died"
out=$(ctl "$CTL1" destroy tdtest1)
echo "$out" | grep -q "error: permission denied" || fail "the tapdisk's own user was admitted: $out"
out=$(ctl "$CTL1" info)
echo "$out" | grep -q "^pid=$P1" || fail "root was refused: $out"
qemu-io -f raw -c "read -P 0x3c 0 1M" "$U1" | grep -q "read 1048576" || fail "data not intact at the end"
tap-ctl destroy -p "$P1" || fail destroy
tap-ctl destroy -s "${U2#nbd+unix:///?socket=}" || fail destroy2
echo ok
