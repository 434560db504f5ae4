#!/bin/bash
# make install into a staged tree (DESTDIR, a PREFIX of its own), the demo
# flow from the installed programs only (PATH = the staged bindir, no
# TAPDISK_BIN: tap-ctl finds the installed tapdisk in $(libexecdir)/tdcrypt),
# the man pages and units where they belong, an existing tapdisk.conf kept,
# then make uninstall: nothing left but empty directories.
. "$TD_SRC/tests/lib/common.sh"
need make qemu-img qemu-io scdoc

D=$T/dest
P=/opt/tdcrypt-t
MK=(make -s -C "$TD_SRC" BUILD="$BUILD" DESTDIR="$D" PREFIX="$P")

info "make install DESTDIR=$D PREFIX=$P"
"${MK[@]}" install >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "make install"; }
find "$D" -type f -o -type l | sort >"$T/files"
sed "s|^$D||" "$T/files" | sed 's/^/   /'
for f in $P/bin/tap-ctl $P/bin/vdkey $P/libexec/tdcrypt/tapdisk $P/libexec/tdcrypt/vbd-key \
	$P/sbin/tapback $P/libexec/tdcrypt/setup-user $P/share/man/man8/tapdisk.8 $P/share/man/man8/tap-ctl.8 \
	$P/share/man/man8/vdkey.8 $P/share/man/man8/tapback.8 $P/share/man/man5/tdcrypt.5 \
	$P/lib/systemd/system/tapdisk@.service $P/lib/systemd/system/tapback.service \
	$P/share/bash-completion/completions/tap-ctl $P/share/bash-completion/completions/vdkey \
	$P/share/doc/tdcrypt/examples/vbd.conf /etc/tdcrypt/tapdisk.conf /etc/xen/scripts/block-tdcrypt; do
	[ -e "$D$f" ] || fail "make install did not install $f"
done
[ -x "$D$P/libexec/tdcrypt/tapdisk" ] || fail "tapdisk is not executable"
[ -x "$D/etc/xen/scripts/block-tdcrypt" ] || fail "the Xen hotplug script is not executable"
[ ! -e "$D$P/bin/tapdisk" ] || fail "tapdisk belongs in libexecdir, not bindir"
grep -q "^ExecStart=$P/libexec/tdcrypt/tapdisk serve " "$D$P/lib/systemd/system/tapdisk@.service" ||
	fail "the unit does not start the installed tapdisk: $(grep ExecStart= "$D$P/lib/systemd/system/tapdisk@.service")"
MANPATH="$D$P/share/man" man -w tdcrypt >/dev/null 2>&1 || fail "man cannot find tdcrypt(5) in the installed tree"

info "the demo flow with the installed programs only"
# a PATH of the staged bindir and the system's tools, none of the build tree's
export PATH="$D$P/bin:/usr/sbin:/usr/bin:/sbin:/bin"
unset TAPDISK_BIN
[ "$(command -v tap-ctl)" = "$D$P/bin/tap-ctl" ] || fail "tap-ctl on PATH is $(command -v tap-ctl)"
! command -v tapdisk >/dev/null || fail "a tapdisk is on PATH: $(command -v tapdisk)"
tap-ctl --help | grep -q "$P/libexec/tdcrypt/tapdisk" || fail "tap-ctl --help does not name the installed tapdisk"
IMG=$T/vm1.qcow2
head -c 32 /dev/urandom | base64 >"$T/pw"
qemu-img create -q -f qcow2 "$IMG" 256M
vdkey format "qcow2:$IMG" --key-file "$T/pw" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null || fail "vdkey format"
td_on_exit "vdkey unload qcow2:$IMG >/dev/null 2>&1"
vdkey load "qcow2:$IMG" --key-file "$T/pw" >/dev/null || fail "vdkey load"
URI=$(tap-ctl create -a "crypt:qcow2:$IMG") || fail "tap-ctl create (installed tap-ctl and tapdisk)"
echo "   $URI"
pid=$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
exe=$(readlink "/proc/$pid/exe")
[ "$exe" = "$D$P/libexec/tdcrypt/tapdisk" ] || fail "the tapdisk running is $exe, not the installed one"
echo "   tapdisk pid $pid runs $exe"
qemu-io -f raw -c "write -P 0x5c 0 1M" -c "write -P 0xc5 100M 64k" "$URI" >/dev/null || fail "qemu-io write"
qemu-io -f raw -c "read -P 0x5c 0 1M" -c "read -P 0xc5 100M 64k" "$URI" | grep -q "read 65536" ||
	fail "qemu-io read back"
tap-ctl destroy -s "${URI#nbd+unix:///?socket=}" || fail "tap-ctl destroy"
URI=$(tap-ctl create -a "crypt:qcow2:$IMG") || fail "tap-ctl create, again"
out=$(qemu-io -f raw -c "read -P 0x5c 0 1M" -c "read -P 0xc5 100M 64k" "$URI") || fail "read from a fresh tapdisk"
echo "$out" | grep -q "Pattern verification failed" && fail "data differs: $out"
tap-ctl destroy -s "${URI#nbd+unix:///?socket=}" || fail "tap-ctl destroy"
echo "   written, read back through two tapdisks, destroyed"

info "an existing tapdisk.conf is kept by make install and make uninstall"
echo "# mine" >>"$D/etc/tdcrypt/tapdisk.conf"
"${MK[@]}" install >"$T/install2.log" 2>&1 || fail "make install (again)"
grep -q "keeping the existing" "$T/install2.log" || fail "no word about the kept tapdisk.conf: $(cat "$T/install2.log")"
grep -q "^# mine" "$D/etc/tdcrypt/tapdisk.conf" || fail "make install overwrote tapdisk.conf"

info "make uninstall"
"${MK[@]}" uninstall >"$T/uninstall.log" 2>&1 || { cat "$T/uninstall.log"; fail "make uninstall"; }
left=$(find "$D" ! -type d | sed "s|^$D||")
[ "$left" = "/etc/tdcrypt/tapdisk.conf" ] || fail "left after make uninstall: $left"
rm "$D/etc/tdcrypt/tapdisk.conf"
"${MK[@]}" install >/dev/null 2>&1 && "${MK[@]}" uninstall >/dev/null 2>&1 || fail "install, uninstall"
left=$(find "$D" ! -type d)
[ -z "$left" ] || fail "left after make uninstall: $left"
echo "   nothing left but empty directories: $(find "$D" -type d | wc -l)"
echo ok
