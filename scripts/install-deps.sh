#!/bin/sh
# Installs the Debian packages the build and the tests need, when missing.
# Runs as root (CI, a fresh machine); as another user it only reports.
# scdoc makes the man pages; man-db checks them; gnuplot-nox draws the
# bench chart; debhelper, dpkg-dev, fakeroot and lintian build and check
# the Debian packages (make deb-check). debootstrap builds the root of the
# systemd VM (make check-systemd).
set -e
PKGS="build-essential pkg-config libaio-dev libssl-dev libcmocka-dev libkeyutils-dev
keyutils libxen-dev libargon2-dev libseccomp-dev libnbd-dev libnbd-bin
qemu-utils fio strace e2fsprogs util-linux passwd python3 clang valgrind qemu-system-x86 cpio kmod
librbd-dev librados-dev ceph-mon ceph-mgr ceph-osd ceph-common qemu-block-extra uuid-runtime
scdoc man-db bash-completion gnuplot-nox debhelper dpkg-dev fakeroot lintian
zlib1g-dev libvmdk-utils debootstrap"
# libtss2-dev: TPM2 keyslots (vdkey); swtpm, swtpm-tools, tpm2-tools: the
# software TPM t-tpm2-keyslot starts, and an independent client for it
PKGS="$PKGS libtss2-dev swtpm swtpm-tools tpm2-tools"
# libvhdi-utils: vhdiinfo and vhdimount, the independent VHD reader of t-vhd-*
PKGS="$PKGS libvhdi-utils"
# Tang keyslots: libjose-dev (JWK/JWS/ECMR) and libcurl4-openssl-dev for vdkey;
# tang, jose, clevis and socat for t-tang-keyslot (a real server, interop)
PKGS="$PKGS libjose-dev libcurl4-openssl-dev tang jose clevis socat curl"
# python3-cryptography: the independent per-block key check of t-reencrypt-kill9 (tests/lib/reenc_check.py)
PKGS="$PKGS python3-cryptography"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing (run as root or apt-get install them)" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
