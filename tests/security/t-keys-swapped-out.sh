#!/bin/bash
# test: serial — adds a system user and watches the machine's swap
# Attack: key material written to swap. Whoever can read the swap device
# (a stolen disk, a host snapshot, root on a shared host later) finds the
# expanded AES-XTS key schedules there: OpenSSL keeps them in its ordinary
# heap, which the kernel may swap out. A tapdisk must keep every page that
# can hold key material locked in memory, also after it has dropped its
# privileges and reopened its image (pause/unpause), when new key
# schedules are made: libcrypto's heap is locked and wiped
# (td_secure_crypto_heap), and where the locked-memory limit can be lifted
# the whole process is (mlockall with MCL_ONFAULT, so stacks and
# reservations are not populated).
#
#   production  tapdisk serve --user (started as root, then unprivileged):
#               after I/O, a pause/unpause and more I/O, every copy of the
#               XTS schedules and HMAC states (found in /proc/PID/mem from
#               the volume key) lies in locked memory, no capability is
#               kept, and when the log says the whole process is locked,
#               VmLck covers VmRSS and every resident mapping is locked
#   root        the same without --user
#   unprivileged  started by a user whose locked-memory limit is 8 MiB:
#               it serves, and says in its log that only the key material
#               is locked
# Sanitizer builds lock nothing (the runtime ignores mlockall): the locking
# assertions are skipped there, the unprivileged section still runs.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl setpriv python3 useradd
[ "$(id -u)" = 0 ] || skip "needs root to start a tapdisk that drops privileges"
case "$BUILD" in *san*) SAN=1 ;; *) SAN=0 ;; esac
U=tdtest1
getent passwd $U >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin $U ||
	fail "useradd $U"
chmod 0755 "$T" "$TAPDISK_RUNDIR"
KEY=$T/key
printf 'swap test' >"$KEY"
truncate -s 96M "$T/img"
crypt_image "aio:$T/img" "$KEY"
VK=$(keyctl pipe "$(keyctl search @u user "$(key_desc "aio:$T/img")")" | head -c 64 | od -An -tx1 | tr -d ' \n')
[ ${#VK} = 128 ] || fail "cannot read the volume key from the keyring"

io() { # SOCKET PATTERN
	qemu-io -f raw -c "write -P $2 0 16M" -c "read -P $2 0 16M" "$(uri_of "$1")" |
		grep -q "read 16777216" || fail "I/O through $1"
}

# status PID KEY -> value in kB
status() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }

check_locked() { # PID LABEL
	local pid=$1 lck rss out
	# the key material itself: every copy in locked memory
	out=$(python3 "$TD_SRC/tests/lib/keysched.py" "$pid" "$VK") || {
		echo "$out"
		fail "$2: key material outside locked memory (or not found)"
	}
	echo "$out" | tail -n 1
	lck=$(status "$pid" VmLck)
	rss=$(status "$pid" VmRSS)
	echo "$2: VmLck $lck kB, VmRSS $rss kB, VmSize $(status "$pid" VmSize) kB"
	if ! grep -q "^tapdisk\[$pid\]: info: all of this tapdisk's memory is locked" \
		"$TAPDISK_RUNDIR/tapdisk.log"; then
		grep -q "^tapdisk\[$pid\]: warning: only the key material is locked" \
			"$TAPDISK_RUNDIR/tapdisk.log" || fail "$2: the log says nothing about locking"
		echo "$2: the locked-memory limit cannot be lifted here: the key material alone is locked"
		return 0
	fi
	[ "$lck" -ge $((rss * 9 / 10)) ] || fail "$2: VmLck $lck kB is less than 90% of VmRSS $rss kB"
	# every mapping with resident pages is locked ("lo"), except the kernel's
	# special ones that cannot be (VM_IO, VM_PFNMAP, VM_DONTEXPAND: the aio
	# ring, the vdso); locked on fault ("lf": stacks and reservations are not
	# populated) but for the pages crypt/backend/secmem.c mlocks itself
	out=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {m=$0} /^Rss:/ {r=$2}
		/^VmFlags:/ {f=" " substr($0, 9) " "; if (r > 0 && f !~ / (io|pf|de) / &&
			f !~ / lo /) print m " rss " r " kB flags" f}' "/proc/$pid/smaps")
	[ -z "$out" ] || fail "$2: resident mappings not locked:
$out"
	grep -q "^VmFlags:.* lo lf" "/proc/$pid/smaps" || fail "$2: nothing is locked on fault"
}

info "production: tapdisk serve --user $U, I/O, pause/unpause (new key schedules after the drop), I/O"
td_serve "crypt:aio:$T/img" "$T/a.sock" --user $U
P=$TD_PID
io "$T/a.sock" 0x11
tap-ctl pause -s "$T/a.sock" && tap-ctl unpause -s "$T/a.sock" || fail "pause/unpause"
io "$T/a.sock" 0x22
[ "$(awk '/^Uid:/ {print $2}' "/proc/$P/status")" = "$(id -u $U)" ] || fail "not running as $U"
if [ $SAN = 1 ]; then
	echo "sanitizer build ($BUILD): memory is not locked there; locking checks skipped"
	grep -q "sanitizer build: memory is not locked" "$TAPDISK_RUNDIR/tapdisk.log" ||
		fail "no sanitizer note in the log"
else
	check_locked "$P" "tapdisk --user"
	# no capability survives the drop, in any thread
	for st in /proc/$P/task/*/status; do
		eff=$(awk '/^CapEff:/ {print $2}' "$st")
		prm=$(awk '/^CapPrm:/ {print $2}' "$st")
		[ "$eff/$prm" = 0000000000000000/0000000000000000 ] ||
			fail "capabilities kept in $st: effective $eff, permitted $prm"
	done
fi
td_stop "$P" || fail "tapdisk --user did not stop cleanly"

info "root: tapdisk serve without --user"
td_serve "crypt:aio:$T/img" "$T/b.sock"
io "$T/b.sock" 0x33
[ $SAN = 1 ] || check_locked "$TD_PID" "tapdisk as root"
td_stop "$TD_PID" || fail "root tapdisk did not stop cleanly"

info "unprivileged: started by $U with an 8 MiB locked-memory limit, it serves and says memory is not locked"
mkdir -p "$T/u/run" "$T/u/state"
cp --sparse=always "$T/img" "$T/u/img"
chown -R $U: "$T/u"
cp "$KEY" "$T/u/key" && chown $U: "$T/u/key"
# its own session keyring, with its user keyring linked in (as pam_keyinit
# makes it), so the key vdkey loads is possessed by the tapdisk it starts
setpriv --reuid=$U --regid=$U --clear-groups --inh-caps=-all \
	env TAPDISK_RUNDIR="$T/u/run" TDCRYPT_STATE_DIR="$T/u/state" PATH="$PATH" \
	keyctl session - bash -c '
	ulimit -l 8192
	keyctl link @u @s >/dev/null
	vdkey load "aio:$0/u/img" --key-file "$0/u/key" >/dev/null 2>&1 || { echo "load failed"; exit 1; }
	tapdisk serve "crypt:aio:$0/u/img" --socket "$0/u/nbd.sock" 2>"$0/u/tapdisk.log" &
	p=$!
	for i in $(seq 1 100); do [ -S "$0/u/nbd.sock" ] && break; sleep 0.1; done
	qemu-io -f raw -c "write -P 0x44 0 4M" -c "read -P 0x44 0 4M" "nbd+unix:///?socket=$0/u/nbd.sock" |
		grep -q "read 4194304" || echo "I/O failed"
	kill -TERM $p; wait $p; echo "exit $?"
	vdkey unload "aio:$0/u/img" >/dev/null 2>&1' "$T" >"$T/u/out" 2>&1
cat "$T/u/out"
cat "$T/u/tapdisk.log"
grep -qx "exit 0" "$T/u/out" || fail "the unprivileged tapdisk did not serve and exit cleanly"
grep -q "failed" "$T/u/out" && fail "unprivileged: $(cat "$T/u/out")"
if [ $SAN = 0 ]; then
	grep -q "warning: only the key material is locked in memory.*the locked-memory limit is 8 MiB" \
		"$T/u/tapdisk.log" || fail "no clear warning that only the key material is locked"
fi
echo ok
