#!/bin/bash
# The ram driver (tapdisk/drivers/drv_ram.c), with qemu-io as the client:
#  - ram:SIZE (a memfd) serves what qemu-io wrote, and still does after
#    tap-ctl pause / unpause (the memory stays in the file table);
#  - crypt refuses an anonymous RAM disk (and vdkey will not format one),
#    saying why and what to use instead;
#  - a named RAM disk (ram:NAME,size=SIZE) lives in /dev/shm/tdcrypt-NAME:
#    vdkey formats it, crypt:ram:NAME serves it, it survives pause/unpause
#    and the tapdisk's exit, and a second tapdisk cannot serve it at once;
#  - with shm=GROUP a member of GROUP (here nobody:nogroup, through
#    setpriv) can map it read-only and sees exactly what qemu-io wrote
#    (plaintext on plain ram, none of it under crypt), but cannot open it
#    for writing nor map it writable; without shm= it cannot open it;
#  - bad specs (size 0, huge sizes, names with '/' or '..', an unknown
#    group, options in the wrong place) are refused with a clear message.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io python3 setpriv keyctl
getent group nogroup >/dev/null || skip "no group nogroup"
getent passwd nobody >/dev/null || skip "no user nobody"
NOGROUP=$(getent group nogroup | cut -d: -f3)
NOBODY=$(getent passwd nobody | cut -d: -f3)

# a name of our own: two runs of this test never share a RAM disk
N1=tdtest-$$-a
N2=tdtest-$$-b
N3=tdtest-$$-c
td_on_exit "rm -f /dev/shm/tdcrypt-$N1 /dev/shm/tdcrypt-$N2 /dev/shm/tdcrypt-$N3"

qio() { qemu-io -f raw "$@"; }
# reads PATTERN at OFF LEN through URI, or fails with WHAT
expect_pattern() {
	local uri=$1 pat=$2 off=$3 len=$4 what=$5
	qio -c "read -P $pat $off $len" "$uri" >"$T/qio.txt" 2>&1 || { cat "$T/qio.txt"; fail "$what"; }
	grep -q "Pattern verification failed" "$T/qio.txt" && { cat "$T/qio.txt"; fail "$what"; }
	return 0
}
sock_of() { echo "${1#nbd+unix:///?socket=}"; }

info "tapdisk drivers lists ram as an image driver"
tapdisk drivers | grep -E "^ram +image +RAM disk in shared memory" || fail "tapdisk drivers: $(tapdisk drivers)"

info "ram:SIZE serves what qemu-io wrote, before and after pause/unpause"
URI=$(tap-ctl create -a ram:64M) || fail "create ram:64M"
S=$(sock_of "$URI")
[ "$(tap-ctl list --json | python3 -c 'import json,sys; print([e["size"] for e in json.load(sys.stdin) if e["spec"]=="ram:64M"][0])')" = 67108864 ] ||
	fail "list does not show a 64 MiB disk"
qio -c "write -P 0xa5 0 1M" -c "write -P 0x5a 63M 1M" -c "write -P 0x11 4096 512" "$URI" >/dev/null ||
	fail "qemu-io write"
expect_pattern "$URI" 0x5a 63M 1M "read back the end"
expect_pattern "$URI" 0x11 4096 512 "read back 512 bytes at 4096"
expect_pattern "$URI" 0x00 32M 1M "an unwritten range reads zeros"
tap-ctl pause -s "$S" || fail pause
tap-ctl unpause -s "$S" || fail unpause
expect_pattern "$URI" 0xa5 0 4096 "after unpause: the start"
expect_pattern "$URI" 0x5a 63M 1M "after unpause: the end"
expect_pattern "$URI" 0x11 4096 512 "after unpause: the middle"
# discard gives the memory back and reads zeros after it
qio -c "discard 63M 1M" "$URI" >/dev/null || fail "qemu-io discard"
expect_pattern "$URI" 0x00 63M 1M "a discarded range reads zeros"
# past the end: refused by the client or the server, never served
qio -c "read 64M 4096" "$URI" >"$T/past.txt" 2>&1
grep -qi "error\|invalid\|out of range\|input/output" "$T/past.txt" || { cat "$T/past.txt"; fail "a read past the end was served"; }
tap-ctl destroy -s "$S" || fail destroy
echo "   ram:64M: 3 patterns read back, also after pause/unpause; discard reads zeros"

info "crypt refuses an anonymous RAM disk; vdkey will not format one"
printf 'ram test passphrase' >"$T/key"
out=$(tap-ctl create -a crypt:ram:64M 2>&1) && fail "crypt:ram:64M was served: $out"
echo "$out" | grep -q "crypt: refused: an anonymous RAM disk (ram:SIZE) is born empty" || fail "message: $out"
echo "$out" | grep -q "use a named one (ram:NAME,size=SIZE)" || fail "message lacks the way out: $out"
echo "   $out"
out=$(vdkey format ram:64M --key-file "$T/key" --pbkdf pbkdf2 --pbkdf-iterations 1000 2>&1) &&
	fail "vdkey formatted an anonymous RAM disk: $out"
echo "$out" | grep -q "refused: an anonymous RAM disk" || fail "vdkey message: $out"
echo "   $out"

info "a named RAM disk with shm=nogroup: a member of nogroup maps it read-only and sees the data"
URI=$(tap-ctl create -a "ram:$N1,size=16M,shm=nogroup") || fail "create named ram"
S=$(sock_of "$URI")
F=/dev/shm/tdcrypt-$N1
[ -f "$F" ] || fail "$F does not exist"
[ "$(stat -c '%s %a %g' "$F")" = "16777216 640 $NOGROUP" ] || fail "$F: $(stat -c '%s %a %g' "$F")"
qio -c "write -P 0x3c 1M 64K" "$URI" >/dev/null || fail "qemu-io write"
# the inspector: nobody:nogroup, no other groups; the system's python
# (root's may be a shim in /root), the script on stdin ($T is root's, 0700)
as_nobody() { setpriv --reuid="$NOBODY" --regid="$NOGROUP" --clear-groups /usr/bin/python3 "$@"; }
cat >"$T/inspect.py" <<'EOF'
import errno, mmap, os, sys
path, off, n, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print("uid", os.getuid(), "gid", os.getgid(), "groups", os.getgroups())
for flags in (os.O_RDWR, os.O_WRONLY):
    try:
        os.open(path, flags)
        sys.exit("opened for writing: must be refused")
    except PermissionError:
        pass
fd = os.open(path, os.O_RDONLY)
try:
    mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    sys.exit("mapped writable: must be refused")
except PermissionError:
    pass
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
data = m[off:off + n]
if want == "plain":
    assert data == b"\x3c" * n, "the mapping does not show what qemu-io wrote"
    print("read-only mapping shows the 0x3c pattern; writes refused")
else:
    assert b"\x3c" * 64 not in m[:], "plaintext visible in an encrypted RAM disk"
    print("read-only mapping shows no plaintext; writes refused")
EOF
as_nobody - "$F" $((1 << 20)) 65536 plain <"$T/inspect.py" ||
	fail "the read-only inspection failed"
info "a second tapdisk cannot serve the same named RAM disk"
out=$(tap-ctl create -a "ram:$N1,size=16M,shm=nogroup" 2>&1) && fail "served twice: $out"
echo "$out" | grep -q "is in use by another process" || fail "message: $out"
echo "   $out"
out=$(tap-ctl create -a "ram:$N1,size=32M" 2>&1) && fail "served with another size: $out"
echo "$out" | grep -q "exists with 16777216 bytes, the spec says 33554432" || fail "message: $out"
echo "   $out"
tap-ctl pause -s "$S" || fail pause
tap-ctl unpause -s "$S" || fail unpause
expect_pattern "$URI" 0x3c 1M 64K "named: after unpause"
tap-ctl destroy -s "$S" || fail destroy
[ -f "$F" ] || fail "$F is gone with its tapdisk"
URI=$(tap-ctl create -a "ram:$N1,size=16M,shm=nogroup") || fail "create named ram again"
expect_pattern "$URI" 0x3c 1M 64K "named: served again by a new tapdisk"
URI2=$(tap-ctl create -r -a "ram:$N3,size=16M" 2>&1) && fail "a read-only RAM disk that does not exist was served"
echo "$URI2" | grep -q "does not exist.*a read-only RAM disk must exist already" || fail "message: $URI2"
tap-ctl destroy -s "$(sock_of "$URI")" || fail destroy
echo "   the data stays in $F across pause/unpause and a new tapdisk"

info "without shm= nobody else may open it"
URI=$(tap-ctl create -a "ram:$N3,size=4M") || fail "create named ram without shm"
[ "$(stat -c '%a' "/dev/shm/tdcrypt-$N3")" = 600 ] || fail "mode $(stat -c '%a' "/dev/shm/tdcrypt-$N3")"
as_nobody -c '
import os, sys
try:
    os.open(sys.argv[1], os.O_RDONLY)
except PermissionError:
    sys.exit(0)
sys.exit("opened without shm=")' "/dev/shm/tdcrypt-$N3" || fail "a RAM disk without shm= could be read by nobody"
tap-ctl destroy -s "$(sock_of "$URI")" || fail destroy

info "crypt:ram:NAME: vdkey formats a named RAM disk, the tapdisk serves it encrypted"
crypt_image "ram:$N2,size=64M" "$T/key"
# after crypt_image's 'vdkey unload' at exit, which opens (and so would
# create again) the RAM disk
td_on_exit "rm -f /dev/shm/tdcrypt-$N2"
URI=$(tap-ctl create -a "crypt:ram:$N2,size=64M") || fail "create crypt:ram"
S=$(sock_of "$URI")
qio -c "write -P 0x3c 0 1M" -c "write -P 0x77 8M 64K" "$URI" >/dev/null || fail "qemu-io write (crypt)"
expect_pattern "$URI" 0x3c 0 1M "crypt:ram: read back"
tap-ctl pause -s "$S" || fail pause
tap-ctl unpause -s "$S" || fail unpause
expect_pattern "$URI" 0x3c 0 1M "crypt:ram: after unpause"
expect_pattern "$URI" 0x77 8M 64K "crypt:ram: after unpause (2)"
python3 - "/dev/shm/tdcrypt-$N2" <<'EOF' || fail "plaintext in the encrypted RAM disk"
import sys
data = open(sys.argv[1], "rb").read()
assert b"\x3c" * 64 not in data and b"\x77" * 64 not in data
EOF
st=$(tap-ctl stats -s "$S" --json)
echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["errors"]==0 and s["integrity_failures"]==0, s' ||
	fail "errors in stats: $st"
tap-ctl destroy -s "$S" || fail destroy
echo "   crypt:ram:$N2: served, kept across pause/unpause, no plaintext in /dev/shm"

info "bad ram specs are refused with a clear message"
refused() {
	local spec=$1 says=$2 out
	out=$(tap-ctl create -a "$spec" 2>&1) && fail "'$spec' was served: $out"
	echo "$out" | grep -qF -- "$says" || fail "'$spec': message '$out' lacks '$says'"
	echo "   $spec: $out"
}
refused ram:0 "size 0 is empty"
refused "ram:$N3,size=0" "size 0 is empty"
refused ram:1000 "not a multiple of 4096"
refused ram:99999T "is too large (at most 16T)"
refused ram:18446744073709551616 "is too large"
refused ram:8T "is more than this host's memory and swap"
refused "ram:a/b,size=1M" "is neither a size nor a name"
refused "ram:..,size=1M" "is neither a size nor a name"
refused "ram:../etc,size=1M" "is neither a size nor a name"
refused "ram:.hidden,size=1M" "is neither a size nor a name"
refused "ram:$N3" "without its size"
refused "ram:$N3,size=1M,shm=no_such_group_$$" "names a group that does not exist"
refused "ram:$N3,size=1M,shm=../x" "bad shm="
refused "ram:$N3,size=1M,mode=777" "unknown option 'mode=777'"
refused "ram,size=1M:$N3" "options go after the colon"
refused "ram:1G,shm=nogroup" "options need a named RAM disk"
[ ! -e "/dev/shm/tdcrypt-$N3" ] || [ "$(stat -c %s "/dev/shm/tdcrypt-$N3")" = 4194304 ] ||
	fail "a refused spec changed /dev/shm/tdcrypt-$N3"
ls /dev/shm | grep -q "tdcrypt-no_such\|tdcrypt-\.\." && fail "a refused spec left an object in /dev/shm"
echo ok
