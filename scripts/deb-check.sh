#!/bin/bash
# make deb-check: builds the Debian packages (scripts/deb-build.sh), runs
# lintian (no error allowed; every tag is printed), installs them on this
# machine (dpkg -i, as root), checks what the postinst did (the tapdisk
# user, the VBD uid range), runs the demo flow with the installed programs
# only (format, load, create, write and read with qemu-io, destroy), checks
# the installed units and man pages, then purges the packages and puts back
# what was there before: the machine is left as it was. Refuses to run when
# tdcrypt is already installed.
# Usage: scripts/deb-check.sh [OUTDIR]   (default build/deb)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/deb}
die() { echo "deb-check: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
[ "$(id -u)" = 0 ] || die "run as root (it installs and purges the packages)"
for p in tdcrypt tdcrypt-xen; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "installed"; then
		die "$p is installed on this machine; deb-check installs and purges it, so it will not run here"
	fi
done
for t in lintian qemu-img qemu-io systemd-analyze man; do
	command -v "$t" >/dev/null || die "$t is not installed (scripts/install-deps.sh)"
done

step "build"
scripts/deb-build.sh "$OUT"
debs=("$OUT"/tdcrypt_*.deb "$OUT"/tdcrypt-xen_*.deb)

step "lintian"
lintian -I --pedantic "${debs[@]}" 2>&1 | grep -v "running with root privileges" | tee "$OUT/lintian.txt" || true
! grep -q "^E:" "$OUT/lintian.txt" || die "lintian reports errors"
echo "   $(grep -c '^W:' "$OUT/lintian.txt" || true) warnings, $(grep -c '^[IP]:' "$OUT/lintian.txt" || true) info/pedantic tags, no errors"

# what the packages may change, to put it back afterwards
W=$(mktemp -d /var/tmp/tddebchk.XXXXXX)
had_user=$(getent passwd tapdisk >/dev/null && echo yes || echo no)
had_conf=no
[ -e /etc/tdcrypt/tapdisk.conf ] && { cp -p /etc/tdcrypt/tapdisk.conf "$W/tapdisk.conf.before"; had_conf=yes; }
had_etc=$([ -d /etc/tdcrypt ] && echo yes || echo no)
had_vbd=$([ -d /etc/tdcrypt/vbd ] && echo yes || echo no)
restore() {
	local rc=$?
	set +e
	for p in $(pgrep -f '^/usr/libexec/tdcrypt/tapdisk serve .*'"$W"); do kill "$p"; done
	dpkg --purge tdcrypt-xen tdcrypt >"$W/purge.log" 2>&1 || { cat "$W/purge.log"; rc=1; }
	[ "$had_user" = no ] && getent passwd tapdisk >/dev/null && userdel tapdisk
	if [ "$had_conf" = yes ]; then
		mkdir -p /etc/tdcrypt && cp -p "$W/tapdisk.conf.before" /etc/tdcrypt/tapdisk.conf
	fi
	[ "$had_vbd" = yes ] && mkdir -p /etc/tdcrypt/vbd
	[ "$had_etc" = no ] && [ -d /etc/tdcrypt ] && rmdir /etc/tdcrypt/vbd /etc/tdcrypt 2>/dev/null
	rm -rf "$W"
	[ $rc = 0 ] && echo "deb-check: OK (packages purged, the machine as it was)"
	exit $rc
}
trap restore EXIT

step "install (dpkg -i)"
dpkg -i "${debs[@]}" >"$W/install.log" 2>&1 || { cat "$W/install.log"; die "dpkg -i"; }
sed 's/^/   /' "$W/install.log" | grep -iv "^   \(selecting\|(reading\|preparing\|unpacking\)" || true
getent passwd tapdisk >/dev/null || die "the postinst did not create the user tapdisk"
grep -q '^uid-range' /etc/tdcrypt/tapdisk.conf || die "no uid-range in /etc/tdcrypt/tapdisk.conf"
echo "   user tapdisk: $(getent passwd tapdisk)"
echo "   $(grep '^uid-range' /etc/tdcrypt/tapdisk.conf)"

step "the installed units and man pages"
for u in tapdisk@vm1.service tapback.service; do
	out=$(systemd-analyze verify "/lib/systemd/system/$u" 2>&1) || die "systemd-analyze verify $u: $out"
	[ -z "$out" ] || die "systemd-analyze verify $u: $out"
done
for m in tapdisk.8 tap-ctl.8 vdkey.8 tapback.8 tdcrypt.5; do
	man -w "${m%.*}" >/dev/null 2>&1 || die "man ${m%.*}: not found"
	w=$(MANWIDTH=80 man --warnings "${m##*.}" "${m%.*}" 2>&1 >/dev/null)
	[ -z "$w" ] || die "man ${m%.*}: $w"
done
[ -r /usr/share/bash-completion/completions/tap-ctl ] || die "no completion for tap-ctl"
echo "   units verified; tapdisk(8) tap-ctl(8) vdkey(8) tapback(8) tdcrypt(5) render; completion installed"

step "the demo flow, with the installed programs only"
(
	export PATH=/usr/sbin:/usr/bin:/sbin:/bin
	unset TAPDISK_BIN
	export TAPDISK_RUNDIR=$W/run TDCRYPT_STATE_DIR=$W/state
	[ "$(command -v tap-ctl)" = /usr/bin/tap-ctl ] || die "tap-ctl is $(command -v tap-ctl)"
	IMG=$W/vm1.qcow2
	head -c 32 /dev/urandom | base64 >"$W/pw"
	qemu-img create -q -f qcow2 "$IMG" 256M
	vdkey format "qcow2:$IMG" --key-file "$W/pw" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
		die "vdkey format"
	vdkey load "qcow2:$IMG" --key-file "$W/pw" >/dev/null || die "vdkey load"
	trap 'vdkey unload "qcow2:$IMG" >/dev/null 2>&1 || true' EXIT
	URI=$(tap-ctl create -a "crypt:qcow2:$IMG") || die "tap-ctl create: $(tail -3 "$W/run/tapdisk.log")"
	pid=$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
	[ "$(readlink "/proc/$pid/exe")" = /usr/libexec/tdcrypt/tapdisk ] ||
		die "the tapdisk running is $(readlink "/proc/$pid/exe")"
	echo "   $URI (tapdisk pid $pid: /usr/libexec/tdcrypt/tapdisk)"
	qemu-io -f raw -c "write -P 0x6d 0 1M" -c "write -P 0xd6 64M 64k" "$URI" >/dev/null || die "qemu-io write"
	tap-ctl destroy -s "${URI#nbd+unix:///?socket=}" || die "tap-ctl destroy"
	URI=$(tap-ctl create -a "crypt:qcow2:$IMG") || die "tap-ctl create (again)"
	out=$(qemu-io -f raw -c "read -P 0x6d 0 1M" -c "read -P 0xd6 64M 64k" "$URI") || die "qemu-io read"
	! echo "$out" | grep -q "Pattern verification failed" || die "read back: $out"
	tap-ctl destroy -s "${URI#nbd+unix:///?socket=}" || die "tap-ctl destroy"
	echo "   written, read back through a fresh tapdisk, destroyed"
)

step "purge"
dpkg -L tdcrypt tdcrypt-xen | sort -u >"$W/files"
dpkg --purge tdcrypt-xen tdcrypt >"$W/purge.log" 2>&1 || { cat "$W/purge.log"; die "dpkg --purge"; }
left=""
while read -r f; do
	[ -e "$f" ] && [ ! -d "$f" ] && left="$left $f"
done <"$W/files"
[ -z "$left" ] || die "left after the purge:$left"
[ ! -e /usr/libexec/tdcrypt ] || die "/usr/libexec/tdcrypt is left"
echo "   purged: none of the packages' files is left"
