#!/bin/bash
# test: serial — adds a system user (useradd locks /etc/passwd)
# Attack: a tenant who owns the directory of its image (and of a custom
# --socket) swaps a symbolic link in after the tapdisk opened the image
# (and after it bound the socket); a tapdisk that then hands "the image"
# and "the socket" to its user by path (chown) hands over whatever the
# link points at, e.g. a root-only file. Nothing may ever be chowned or
# chmodded by path: the image reaches the tapdisk as the descriptor opened
# before the privilege drop, and the socket is created with its final
# mode. Checked both ways: the race itself (inotify, as the tenant), and a
# system-call trace of the whole start (no chown/chmod on a path at all).
# (SECURITY.md, "a hostile tenant's directory")
. "$TD_SRC/tests/lib/common.sh"
need qemu-io setpriv useradd strace python3
[ "$(id -u)" = 0 ] || skip "needs root (root starts the tapdisk in a tenant's directory)"
for u in tdtenant1 tdtenant2; do
	getent passwd $u >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin $u ||
		fail "useradd $u"
done
chmod 0711 "$T"
D=$T/tenant
mkdir -m 0700 "$D" && chown tdtenant1: "$D"
for v in victim1 victim2; do
	echo "root's own $v" >"$T/$v"
	chmod 0600 "$T/$v"
done
KEY=$T/key
printf 'chown race' >"$KEY"
truncate -s 64M "$D/img"
chown tdtenant1: "$D/img"
crypt_image "aio:$D/img" "$KEY"

# the tenant's swapper: on the first open of img and the creation of
# nbd.sock, puts a link to a root-only file in their place
setpriv --reuid=tdtenant1 --regid=tdtenant1 --clear-groups /usr/bin/python3 - "$D" "$T/victim1" "$T/victim2" \
	>"$T/swapper.out" 2>&1 <<'PY' &
import ctypes, os, struct, sys
d, v1, v2 = sys.argv[1:4]
libc = ctypes.CDLL("libc.so.6", use_errno=True)
IN_OPEN, IN_CREATE = 0x20, 0x100
fd = libc.inotify_init1(0)
libc.inotify_add_watch(fd, d.encode(), IN_OPEN | IN_CREATE)
print("ready", flush=True)
done = set()
while len(done) < 2:
    buf = os.read(fd, 65536)
    i = 0
    while i < len(buf):
        _, mask, _, ln = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16:i + 16 + ln].rstrip(b"\0").decode()
        i += 16 + ln
        if name == "img" and mask & IN_OPEN and "img" not in done:
            os.rename(d + "/img", d + "/img.real"); os.symlink(v1, d + "/img"); done.add("img")
            print("swapped img", flush=True)
        if name == "nbd.sock" and mask & IN_CREATE and "sock" not in done:
            os.rename(d + "/nbd.sock", d + "/nbd.sock.real"); os.symlink(v2, d + "/nbd.sock")
            done.add("sock")
            print("swapped nbd.sock", flush=True)
PY
SW=$!
for i in $(seq 1 100); do grep -q ready "$T/swapper.out" && break; sleep 0.05; done

info "the race: links swapped in right after the open and the bind"
# the tapdisk may serve the file it opened, or refuse it because the file it
# opened was renamed before its key was looked up (a loaded key is bound to
# the file's path and identity): either way, nothing of root's changes hands
U=$(tap-ctl create --user tdtenant2 -a "crypt:aio:$D/img" -s "$D/nbd.sock" 2>"$T/create.err")
rc=$?
for i in $(seq 1 100); do kill -0 $SW 2>/dev/null || break; sleep 0.05; done
kill $SW 2>/dev/null
cat "$T/swapper.out" "$T/create.err"
grep -q "swapped img" "$T/swapper.out" || fail "the swapper never saw the open"
for v in victim1 victim2; do
	st=$(stat -c '%u:%g %a' "$T/$v")
	[ "$st" = "0:0 600" ] || fail "$v is now $st: root's file was handed to the tapdisk's user"
done
[ "$(stat -c %u "$D/img.real")" = "$(id -u tdtenant1)" ] || fail "the image changed owner"
if [ $rc = 0 ]; then
	S=$D/nbd.sock
	[ -S "$D/nbd.sock.real" ] && S=$D/nbd.sock.real
	[ "$(stat -c '%u %a' "$S")" = "0 600" ] || fail "socket: $(stat -c '%u %a' "$S")"
	qemu-io -f raw -c "write -P 0x71 0 64k" -c "read -P 0x71 0 64k" "$(uri_of "$S")" |
		grep -q "read 65536" || fail "the tapdisk does not serve its image"
	tap-ctl destroy -p "$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')" ||
		fail destroy
else
	grep -q "belongs to another file" "$T/create.err" || fail "create failed: $(cat "$T/create.err")"
fi

info "the trace: no chown or chmod on a path, from tap-ctl create to serving"
rm -f "$D/nbd.sock" "$D/nbd.sock.real"
[ -e "$D/img" ] && [ ! -L "$D/img" ] || mv -f "$D/img.real" "$D/img"
vdkey load "aio:$D/img" --key-file "$KEY" >/dev/null || fail "reload for the restored file"
strace -f -qq -e trace=chown,lchown,fchownat,chmod,fchmodat -o "$T/trace" \
	tapdisk serve "crypt:aio:$D/img" --user tdtenant2 --socket "$D/nbd.sock" 2>>"$TAPDISK_RUNDIR/tapdisk.log" &
ST=$!
for i in $(seq 1 200); do [ -S "$D/nbd.sock" ] && break; sleep 0.05; done
qemu-io -f raw -c "write -P 0x72 0 64k" -c "read -P 0x72 0 64k" "$(uri_of "$D/nbd.sock")" | grep -q "read 65536" ||
	fail "not serving under strace"
tap-ctl destroy -s "$D/nbd.sock" || fail destroy
wait $ST
cat "$T/trace"
grep -E 'chown|chmod' "$T/trace" && fail "ownership or mode changed by path"
echo ok
