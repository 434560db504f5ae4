#!/bin/bash
# test: serial — adds a system user (useradd locks /etc/passwd)
# Attack: a tenant who owns a qcow2 image makes its backing file name point
# at a file of root's (absolute, via "..", via a symbolic link beside the
# image, or another tenant's image beside it) and has root serve the image:
# a read of an unallocated cluster would return the host file. Backing files
# must be opened with the top image owner's rights, beside the top image or
# below an allowed directory, without following links, and belong to root
# or to that owner; a refusal names the file and the rule. Legitimate chains
# (a golden image beside the top, an allowed directory per VBD or per host)
# keep working. (SECURITY.md, "a hostile tenant's image")
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io setpriv useradd python3
[ "$(id -u)" = 0 ] || skip "needs root (root serves a tenant's image)"
for u in tdtenant1 tdtenant2; do
	getent passwd $u >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin $u ||
		fail "useradd $u"
done
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups "$@"; }
chmod 0711 "$T"
SOCK=$T/s.sock
URI=$(uri_of "$SOCK")

# the host's secret: a root-only file
mkdir -m 0700 "$T/rootonly"
python3 -c "import sys; sys.stdout.write(('ROOT-ONLY-SECRET-' * 4096)[:65536])" >"$T/rootonly/secret"
chmod 0600 "$T/rootonly/secret"
# the tenant's directory, and a shared one (sticky, like /srv/images with many owners)
mkdir -m 0700 "$T/tenant" && chown tdtenant1: "$T/tenant"
mkdir -m 1777 "$T/shared"

# refused SPEC NEEDLE... -- serving SPEC as root fails, and names each NEEDLE
refused() {
	local spec=$1 out pid i
	shift
	tapdisk serve "$spec" --socket "$SOCK" >"$T/out" 2>&1 </dev/null &
	pid=$!
	for i in $(seq 1 200); do
		kill -0 $pid 2>/dev/null || break
		[ -S "$SOCK" ] && break
		sleep 0.05
	done
	if kill -0 $pid 2>/dev/null; then
		out=$(qemu-io -r -f raw -c "read -v 0 64" "$URI" 2>&1)
		kill $pid
		wait $pid
		echo "$out" | grep -q "ROOT.ONLY.SECRET" && fail "$spec: served, and a read returned the host file: $out"
		fail "$spec: served"
	fi
	wait $pid && fail "$spec: exit status 0"
	out=$(cat "$T/out")
	for i in "$@"; do
		echo "$out" | grep -qF -- "$i" || fail "$spec: message lacks '$i': $out"
	done
	echo "   refused: ${out#*error: }"
}

info "an absolute backing name outside the image's directory"
as tdtenant1 qemu-img create -q -f qcow2 -u -F raw -b "$T/rootonly/secret" "$T/tenant/abs.qcow2" 1M ||
	fail "qemu-img create as the tenant"
refused "qcow2:$T/tenant/abs.qcow2" "$T/rootonly/secret" "outside the directories"

info "a relative name that climbs out with .."
as tdtenant1 qemu-img create -q -f qcow2 -u -F raw -b "../rootonly/secret" "$T/tenant/rel.qcow2" 1M
refused "qcow2:$T/tenant/rel.qcow2" "$T/rootonly/secret" "outside the directories"

info "a symbolic link beside the image"
as tdtenant1 ln -s "$T/rootonly/secret" "$T/tenant/link"
as tdtenant1 qemu-img create -q -f qcow2 -u -F raw -b link "$T/tenant/sym.qcow2" 1M
refused "qcow2:$T/tenant/sym.qcow2" "link" "symbolic link"
info "a directory link beside the image"
as tdtenant1 ln -s "$T/rootonly" "$T/tenant/dir"
as tdtenant1 qemu-img create -q -f qcow2 -u -F raw -b dir/secret "$T/tenant/dsym.qcow2" 1M
refused "qcow2:$T/tenant/dsym.qcow2" "dir/secret" "symbolic link"

info "a root-only file beside the image, which the tenant cannot read"
cp "$T/rootonly/secret" "$T/shared/secret"
as tdtenant1 qemu-img create -q -f qcow2 -u -F raw -b secret "$T/shared/near.qcow2" 1M
refused "qcow2:$T/shared/near.qcow2" "secret" "cannot be read by the top image's owner"

info "another tenant's image beside it, even a readable one"
as tdtenant2 sh -c "head -c 1M /dev/zero >'$T/shared/other.raw' && chmod 0644 '$T/shared/other.raw'"
as tdtenant1 qemu-img create -q -f qcow2 -u -F raw -b other.raw "$T/shared/steal.qcow2" 1M
refused "qcow2:$T/shared/steal.qcow2" "other.raw" "belongs to uid $(id -u tdtenant2)" \
	"must belong to root or to the top image's owner"

info "vdkey, run by root on the tenant's image, is confined the same way"
out=$(vdkey format "qcow2:$T/tenant/abs.qcow2" --key-file /dev/null 2>&1) && fail "vdkey format opened it"
echo "$out" | grep -q "outside the directories" || fail "vdkey message: $out"

info "legitimate: a golden image of root's beside the top image"
mkdir -m 0755 "$T/golden"
head -c 1M /dev/zero | tr '\0' 'G' >"$T/golden/base.raw"
chmod 0644 "$T/golden/base.raw"
cp "$T/golden/base.raw" "$T/shared/base.raw" && chmod 0644 "$T/shared/base.raw"
as tdtenant1 qemu-img create -q -f qcow2 -F raw -b base.raw "$T/shared/vm.qcow2" 1M
td_serve "qcow2:$T/shared/vm.qcow2" "$SOCK"
qemu-io -r -f raw -c "read -P 0x47 0 64k" "$URI" | grep -q "read 65536" || fail "golden base not read"
td_stop "$TD_PID" || fail "stop"

info "an allowed directory: the VBD's backing-dir= option, or the host's tapdisk.conf"
as tdtenant1 qemu-img create -q -f qcow2 -F raw -b "$T/golden/base.raw" "$T/tenant/g.qcow2" 1M
refused "qcow2:$T/tenant/g.qcow2" "$T/golden/base.raw" "outside the directories" "backing-dir="
td_serve "qcow2,backing-dir=$T/golden:$T/tenant/g.qcow2" "$SOCK"
qemu-io -r -f raw -c "read -P 0x47 0 64k" "$URI" | grep -q "read 65536" || fail "backing-dir= not honoured"
td_stop "$TD_PID" || fail "stop"
printf '# test\nbacking-dirs = %s\n' "$T/golden" >"$T/tapdisk.conf"
chmod 0644 "$T/tapdisk.conf"
TDCRYPT_CONF=$T/tapdisk.conf td_serve "qcow2:$T/tenant/g.qcow2" "$SOCK"
qemu-io -r -f raw -c "read -P 0x47 0 64k" "$URI" | grep -q "read 65536" || fail "tapdisk.conf not honoured"
td_stop "$TD_PID" || fail "stop"
info "... but never through a link inside it, and never a file of another tenant's"
as tdtenant1 qemu-img create -q -f qcow2 -u -F raw -b "$T/golden/escape/secret" "$T/tenant/e.qcow2" 1M
ln -s "$T/rootonly" "$T/golden/escape"
TDCRYPT_CONF=$T/tapdisk.conf refused "qcow2:$T/tenant/e.qcow2" "symbolic link"

info "a settings file others can write is refused"
chmod 0666 "$T/tapdisk.conf"
out=$(TDCRYPT_CONF=$T/tapdisk.conf tapdisk serve "aio:$T/golden/base.raw" --socket "$SOCK" 2>&1) &&
	fail "served with a world-writable tapdisk.conf"
echo "$out" | grep -q "must belong to root and be writable by root only" || fail "message: $out"
echo ok
