#!/bin/bash
# test: serial — checks the machine-wide uid locks in /run/tdcrypt/uids
# Attack: code running as one VBD's tapdisk (after a compromise, inside its
# seccomp filter) goes after another VBD: opens its image read-write, talks
# to its control socket, reads its plaintext over its NBD socket, reads its
# key or its memory. With one shared tapdisk uid that owned every image and
# socket, all of that worked. Each VBD now runs as a uid of its own from a
# range root reserves, nothing is chowned to it, the sockets stay root's,
# and its uid is released when it ends. The probe below runs exactly the
# tapdisk's sandbox code (tests/tools/sandbox_probe: td_sandbox_drop and
# the seccomp profile) as VBD 1's uid. A pause/unpause of an image in a
# 0700 directory of root's keeps working (the reopen uses what was opened
# before the drop). (SECURITY.md, "another VBD's tapdisk")
. "$TD_SRC/tests/lib/common.sh"
need qemu-io python3 flock
[ "$(id -u)" = 0 ] || skip "needs root (tapdisks drop to their own uids only when started by root)"
PROBE=$TD_TOOLS/sandbox_probe
case "$BUILD" in *san*) SAN=1 ;; *) SAN=0 ;; esac
KEY=$T/key
printf 'per-VBD uid test' >"$KEY"
for i in 1 2; do
	mkdir -m 0700 "$T/vbd$i" # root's, closed to everyone else
	truncate -s 64M "$T/vbd$i/img"
	crypt_image "aio:$T/vbd$i/img" "$KEY"
done
U1=$(tap-ctl create -a "crypt:aio:$T/vbd1/img") || fail "create 1"
U2=$(tap-ctl create -a "crypt:aio:$T/vbd2/img") || fail "create 2"
S1=${U1#nbd+unix:///?socket=}
S2=${U2#nbd+unix:///?socket=}
field_of() { # field_of SOCKET KEY
	tap-ctl list --json | python3 -c "import json,sys
print([e['$2'] for e in json.load(sys.stdin) if e['socket']=='$1'][0])"
}
P1=$(field_of "$S1" pid)
P2=$(field_of "$S2" pid)
C2=$TAPDISK_RUNDIR/tapdisk.$(field_of "$S2" minor).ctl
[ -S "$C2" ] || fail "no control socket $C2"
qemu-io -f raw -c "write -P 0x2b 0 1M" "$U2" >/dev/null || fail "write VBD 2"
qemu-io -f raw -c "write -P 0x1a 0 1M" "$U1" >/dev/null || fail "write VBD 1"

info "each VBD has a uid of its own: not root, not shared, not an account's"
uid_of() { awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$1/status"; }
read -r a b c d < <(uid_of "$P1")
[ "$a" = "$b" ] && [ "$a" = "$c" ] && [ "$a" = "$d" ] || fail "VBD 1 uids: $a $b $c $d"
UID1=$a
UID2=$(uid_of "$P2" | cut -d' ' -f1)
GID1=$(awk '/^Gid:/ {print $2}' "/proc/$P1/status")
echo "   VBD 1: uid $UID1 gid $GID1; VBD 2: uid $UID2"
[ "$UID1" != 0 ] && [ "$UID2" != 0 ] || fail "a tapdisk runs as root"
[ "$UID1" != "$UID2" ] || fail "both VBDs run as uid $UID1"
getent passwd "$UID1" >/dev/null && fail "uid $UID1 belongs to an account"
if getent passwd tapdisk >/dev/null; then
	[ "$UID1" != "$(id -u tapdisk)" ] || fail "VBD 1 runs as the shared user tapdisk"
fi
grep -q "^Groups:\s*$" "/proc/$P1/status" || fail "supplementary groups: $(grep ^Groups "/proc/$P1/status")"
[ -e "/run/tdcrypt/uids/$UID1" ] || fail "no lock file for uid $UID1"

info "nothing was handed to it: images and sockets keep their owners"
for f in "$T/vbd1/img" "$T/vbd2/img" "$S1" "$S2" "$C2"; do
	[ "$(stat -c %u "$f")" = 0 ] || fail "$f belongs to uid $(stat -c %u "$f")"
done
[ "$(stat -c %a "$S2")" = 600 ] || fail "NBD socket mode $(stat -c %a "$S2")"

info "code running as VBD 1 (its uid, its seccomp filter) against VBD 2"
chmod 0711 "$T" "$TAPDISK_RUNDIR" # so only the files' own rights stand in the way
chmod 0755 "$T/vbd2"
chmod 0644 "$T/vbd2/img" # even a world-readable image is not for VBD 1 to open
KDESC=$(key_desc "aio:$T/vbd2/img")
profile=files
[ $SAN = 1 ] && profile=none # sanitizer builds install no filter: the uid alone
out=$("$PROBE" --uid "$UID1" --gid "$GID1" --profile $profile open-rw "$T/vbd2/img" \
	connect "$C2" connect "$S2" keyctl-read "$KDESC" read-proc-mem "$P2" \
	$([ $SAN = 0 ] && echo open-ro "$T/vbd2/img"))
echo "$out" | sed 's/^/   /'
[ "$(echo "$out" | grep -c .)" -ge 5 ] || fail "the probe did not run every action"
echo "$out" | grep -E ": ok$" && fail "VBD 1 reached VBD 2"
info "... and the same probe as root, unconfined, reaches them (so the probe can tell)"
out=$("$PROBE" --profile none open-rw "$T/vbd2/img" connect "$S2")
[ "$(echo "$out" | grep -c ": ok$")" = 2 ] || fail "control probe: $out"

info "VBD 2's data is intact, and VBD 1 pauses and resumes in its 0700 directory"
chmod 0700 "$T/vbd1"
tap-ctl pause -s "$S1" || fail pause
tap-ctl unpause -s "$S1" || fail "unpause of an image in a 0700 directory of root's"
qemu-io -f raw -c "read -P 0x1a 0 1M" "$U1" | grep -q "read 1048576" || fail "VBD 1 data"
qemu-io -f raw -c "read -P 0x2b 0 1M" "$U2" | grep -q "read 1048576" || fail "VBD 2 data"

info "the uid is released when the VBD ends"
tap-ctl destroy -s "$S1" || fail destroy
flock -n "/run/tdcrypt/uids/$UID1" true || fail "uid $UID1 still locked after destroy"
[ ! -e "$S1" ] || fail "VBD 1's socket is left behind"
kill -9 "$P2"
for i in $(seq 1 100); do flock -n "/run/tdcrypt/uids/$UID2" true && break; sleep 0.05; done
flock -n "/run/tdcrypt/uids/$UID2" true || fail "uid $UID2 still locked after kill -9"
echo ok
