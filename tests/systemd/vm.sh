#!/bin/bash
# The real-systemd test (make check-systemd): boots Debian 12 with systemd
# as PID 1 under QEMU without KVM (TCG), with our freshly built Debian
# packages (make deb) installed in it, and runs tests/systemd/vm-test.sh
# there as a oneshot unit ordered after multi-user.target: it starts VBDs
# through tapdisk@.service (one with its key as the credential
# "passphrase", one with the key loaded by root with vdkey load), reads and
# writes them over NBD with qemu-io and nbdcopy, SIGKILLs the tapdisk and
# checks that systemd restarts it and the data reads back, stops the units,
# checks that tapback.service (tdcrypt-xen) is skipped without Xen, prints
# SYSTEMDVM-RESULT=PASS or FAIL (with the units' journal) and powers off.
#
# Usage: tests/systemd/vm.sh [all|base|build|boot|shell]    (default all)
#   base   debootstrap the Debian root (cached in SDVM_WORK/base, rebuilt
#          only when its package list or mirror changes)
#   build  base, then a fresh copy with the packages and the test installed,
#          the root disk image and the initramfs
#   boot   boot what build made and wait for the result
#   shell  boot it with the console on this terminal (Ctrl-a x quits QEMU)
# Needs root (debootstrap, chroot) and qemu-system-x86_64: exits 77
# (skipped) without them; any other missing tool is an error.
# Environment: SDVM_WORK (default build/systemd-vm), SDVM_TIMEOUT (seconds
# for the boot, default 600), SDVM_MIRROR (default http://deb.debian.org/debian),
# SDVM_SECURITY (default http://deb.debian.org/debian-security),
# SDVM_DEBS (our .debs, default build/deb; make deb builds them).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
W=${SDVM_WORK:-$SRC/$BUILD/systemd-vm}
TIMEOUT=${SDVM_TIMEOUT:-600}
MIRROR=${SDVM_MIRROR:-http://deb.debian.org/debian}
SECURITY=${SDVM_SECURITY:-http://deb.debian.org/debian-security}
DEBS=${SDVM_DEBS:-$SRC/$BUILD/deb}
MODE=${1:-all}
SUITE=bookworm

# The kernel and busybox (for the initramfs) are the pinned ones of the Xen
# rig (tests/xen/rig.sh), taken from its cache when it has them.
PIN_KPKG=linux-image-6.1.0-57-amd64
PIN_KVER=6.1.192-3
PIN_BUSYBOX=1:1.35.0-4+deb12u1+b1

# What the root holds: systemd, the tools the test uses, what our packages
# depend on (debian/control; the Xen libraries come from bookworm-security,
# installed with apt in the chroot).
BASE_PKGS=systemd,systemd-sysv,udev,keyutils,qemu-utils,libnbd-bin,libaio1,libargon2-1,libkeyutils1,libseccomp2,libssl3,passwd
# vdkey's token keyslots: libjose, jansson, libcurl (Tang) and libtss2 (TPM2)
BASE_APT_PKGS="libxenevtchn1 libxengnttab1 libxenstore4 libcurl4 libjansson4 libjose0 libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 libtss2-tctildr0"

log() { echo "[sdvm $(date +%T)] $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
skip() {
	echo "SKIP: $*"
	exit 77
}

case "$MODE" in all | base | build | boot | shell) ;; *) die "usage: $0 [all|base|build|boot|shell]" ;; esac
[ "$(id -u)" = 0 ] || skip "the systemd VM test needs root (debootstrap, chroot, device nodes)"
command -v qemu-system-x86_64 >/dev/null ||
	skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
for t in debootstrap mke2fs cpio gzip depmod modprobe dpkg-deb apt-get chroot; do
	command -v $t >/dev/null || die "$t is not installed (scripts/install-deps.sh)"
done

# ---------------------------------------------------------------- base -----
B=$W/base
base_key() { echo "$SUITE $MIRROR $SECURITY $BASE_PKGS $BASE_APT_PKGS v1"; }

base() {
	if [ -f "$B/.sdvm-base" ] && [ "$(cat "$B/.sdvm-base")" = "$(base_key)" ]; then
		log "base: cached ($B)"
		return
	fi
	local t0
	t0=$(date +%s)
	rm -rf "$B" "$B.new"
	mkdir -p "$W"
	log "debootstrap --variant=minbase $SUITE (a few minutes; log: $W/debootstrap.log)"
	nice -n 15 debootstrap --variant=minbase --include="$BASE_PKGS" "$SUITE" "$B.new" "$MIRROR" \
		>"$W/debootstrap.log" 2>&1 || {
		tail -n 30 "$W/debootstrap.log" >&2
		die "debootstrap failed"
	}
	cat >"$B.new/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
	# no daemon starts in the chroot
	printf '#!/bin/sh\nexit 101\n' >"$B.new/usr/sbin/policy-rc.d"
	chmod 755 "$B.new/usr/sbin/policy-rc.d"
	(
		export DEBIAN_FRONTEND=noninteractive LC_ALL=C
		nice -n 15 chroot "$B.new" apt-get -q update &&
			nice -n 15 chroot "$B.new" apt-get -q -y install --no-install-recommends $BASE_APT_PKGS &&
			chroot "$B.new" apt-get clean
	) >>"$W/debootstrap.log" 2>&1 || {
		tail -n 30 "$W/debootstrap.log" >&2
		die "apt-get install $BASE_APT_PKGS in the chroot failed"
	}
	rm -f "$B.new/usr/sbin/policy-rc.d"
	rm -rf "$B.new"/var/lib/apt/lists/*_Packages "$B.new"/var/cache/apt/*.bin
	base_key >"$B.new/.sdvm-base"
	mv "$B.new" "$B"
	log "base: built in $(($(date +%s) - t0)) s ($(du -sm "$B" | cut -f1) MB)"
}

# ---------------------------------------------------------------- fetch ----
# the kernel and busybox-static: the rig's cache, else apt-get download
fetch() {
	mkdir -p "$W/debs"
	local p name f todo=()
	for p in "$PIN_KPKG=$PIN_KVER" "busybox-static=$PIN_BUSYBOX"; do
		name=${p%%=*}
		ls "$W/debs/${name}_"*.deb >/dev/null 2>&1 && continue
		for f in "$SRC/$BUILD/xen-rig/debs/${name}_"*.deb; do
			[ -f "$f" ] && cp "$f" "$W/debs/" && continue 2
		done
		todo+=("$p")
	done
	if [ ${#todo[@]} -gt 0 ]; then
		log "apt-get download ${todo[*]}"
		(cd "$W/debs" && apt-get download "${todo[@]}" >"$W/apt.log" 2>&1) || {
			cat "$W/apt.log" >&2
			die "apt-get download failed (a pinned version gone from the mirror?)"
		}
	fi
}

# ---------------------------------------------------------------- build ----
S=$W/stage  # the kernel and busybox packages, unpacked
R=$W/root   # the VM's root file system
I=$W/initrd # the initramfs: busybox, virtio and ext4 modules, /init
O=$W/out

# add_modules KVER MODULE...: the modules and their dependencies, in load
# order, into $I and $I/modules.list (as tests/xen/rig.sh does)
add_modules() {
	local kver=$1 m line ko
	shift
	for m in "$@"; do
		modprobe -d "$S" -S "$kver" --show-depends "$m" >"$W/deps.tmp" || die "modprobe $m"
		while read -r line; do
			case "$line" in
			insmod\ *)
				ko=$(echo "$line" | awk '{print $2}')
				ko=${ko#"$S"}
				grep -qx "$ko" "$I/modules.list" && continue
				mkdir -p "$I$(dirname "$ko")"
				cp "$S$ko" "$I$ko"
				echo "$ko" >>"$I/modules.list"
				;;
			builtin\ *) ;;
			*) die "modprobe: $line" ;;
			esac
		done <"$W/deps.tmp"
	done
}

build() {
	local p kver deb debs=() a
	for p in tdcrypt tdcrypt-xen; do
		deb=$(find "$DEBS" -maxdepth 1 -name "${p}_*.deb" 2>/dev/null | head -n 1)
		[ -n "$deb" ] || die "no $DEBS/${p}_*.deb: run make deb first"
		debs+=("$deb")
	done
	rm -rf "$S" "$I" "$O"
	mkdir -p "$S" "$O"
	for p in "$W"/debs/*.deb; do dpkg-deb -x "$p" "$S"; done
	kver=$(ls "$S/lib/modules" | head -n 1)
	[ -n "$kver" ] || die "no kernel in $W/debs"
	depmod -b "$S" "$kver"
	cp "$S/boot/vmlinuz-$kver" "$O/vmlinuz"

	# ---- the initramfs: mount /dev/vda, switch_root to systemd
	mkdir -p "$I"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,newroot}
	cp "$S/bin/busybox" "$I/bin/busybox"
	for a in $("$I/bin/busybox" --list-full); do
		[ -e "$I/$a" ] || ln -s /bin/busybox "$I/$a"
	done
	mknod -m 600 "$I/dev/console" c 5 1
	mknod -m 666 "$I/dev/null" c 1 3
	: >"$I/modules.list"
	add_modules "$kver" virtio_pci virtio_blk crc32c_generic ext4
	install -m 755 "$SRC/tests/systemd/initrd-init.sh" "$I/init"
	(cd "$I" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$O/initrd.gz"

	# ---- the root: a fresh copy of the base, our packages, the test
	rm -rf "$R"
	cp -a "$B" "$R"
	cp "${debs[@]}" "$R/tmp/"
	chroot "$R" sh -c 'dpkg -i /tmp/*.deb' >"$W/dpkg.log" 2>&1 || {
		cat "$W/dpkg.log" >&2
		die "dpkg -i of our packages in the VM's root failed"
	}
	rm -f "$R"/tmp/*.deb
	chroot "$R" getent passwd tapdisk >/dev/null || die "the postinst did not create the user tapdisk"
	grep -q '^uid-range' "$R/etc/tdcrypt/tapdisk.conf" || die "the postinst reserved no uid-range"
	echo sdvm >"$R/etc/hostname"
	: >"$R/etc/machine-id"
	# a quick boot: nothing the test does not need
	for a in getty@tty1.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
		fstrim.timer systemd-timesyncd.service serial-getty@ttyS0.service getty-static.service; do
		ln -sf /dev/null "$R/etc/systemd/system/$a"
	done
	# the disks, their keys and their configuration, as the README says
	mkdir -p "$R/srv" "$R/etc/tdcrypt/keys"
	chmod 700 "$R/etc/tdcrypt/keys"
	chroot "$R" /bin/sh -e -c '
		head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n" >/etc/tdcrypt/keys/vm1.pw
		head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n" >/etc/tdcrypt/keys/vm2.pw
		chmod 600 /etc/tdcrypt/keys/*.pw
		qemu-img create -q -f qcow2 /srv/vm1.qcow2 64M
		vdkey format qcow2:/srv/vm1.qcow2 --key-file /etc/tdcrypt/keys/vm1.pw \
			--pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null
		qemu-img create -q -f raw /srv/vm2.img 32M
		vdkey format aio:/srv/vm2.img --key-file /etc/tdcrypt/keys/vm2.pw \
			--pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null
	' >"$W/format.log" 2>&1 || {
		cat "$W/format.log" >&2
		die "creating the images in the VM's root failed"
	}
	echo "SPEC=crypt:qcow2:/srv/vm1.qcow2" >"$R/etc/tdcrypt/vbd/vm1.conf"
	echo "SPEC=crypt:aio:/srv/vm2.img" >"$R/etc/tdcrypt/vbd/vm2.conf"
	# vm1: the key as a credential (vbd-key runs vdkey load --once)
	mkdir -p "$R/etc/systemd/system/tapdisk@vm1.service.d"
	printf '[Service]\nLoadCredential=passphrase:/etc/tdcrypt/keys/vm1.pw\n' \
		>"$R/etc/systemd/system/tapdisk@vm1.service.d/key.conf"
	# the test: a oneshot unit after multi-user.target, output on ttyS0
	install -m 755 "$SRC/tests/systemd/vm-test.sh" "$R/usr/local/sbin/sdvm-test"
	cat >"$R/etc/systemd/system/sdvm-test.service" <<EOF
[Unit]
Description=tdcrypt: tapdisk@.service under systemd (tests/systemd/vm-test.sh)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/sdvm-test
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
# root's user keyring in the session keyring, as in a root login shell
# (pam_keyinit): the test runs vdkey load for vm2 as an administrator would
KeyringMode=shared

[Install]
WantedBy=multi-user.target
EOF
	# a client of a VBD, as a VM's unit would be: ordered after it
	cat >"$R/etc/systemd/system/sdvm-consumer@.service" <<EOF
[Unit]
Description=tdcrypt test: a client of the VBD %i (nbdinfo at once)
Requires=tapdisk@%i.service
After=tapdisk@%i.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/nbdinfo --size nbd+unix:///?socket=/run/tapdisk/%i.sock
EOF
	mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
	ln -sf /etc/systemd/system/sdvm-test.service \
		"$R/etc/systemd/system/multi-user.target.wants/sdvm-test.service"

	# ---- the root disk
	local mb
	mb=$(($(du -sm "$R" | cut -f1) + 256))
	rm -f "$O/root.img"
	nice -n 15 mke2fs -q -t ext4 -d "$R" -L sdvm-root "$O/root.img" "${mb}M" >/dev/null || die "mke2fs -d"
	log "built: $(cd "$O" && ls -s --block-size=M | tr '\n' ' ')"
}

# ---------------------------------------------------------------- boot -----
QPID=
cleanup() {
	if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
		kill "$QPID"
		wait "$QPID" 2>/dev/null || true
	fi
}
KARGS="console=ttyS0,115200 rdinit=/init panic=-1 fsck.mode=skip systemd.show_status=auto"
QEMU_ARGS=(-accel tcg -machine q35 -cpu max -smp 2 -m 2048 -display none -monitor none -no-reboot
	-kernel "$W/out/vmlinuz" -initrd "$W/out/initrd.gz"
	-drive "file=$W/out/root.img,format=raw,if=virtio,cache=unsafe")

# the VM's persistent journal, read from its root disk (debugfs)
vm_journal() {
	local d
	command -v debugfs >/dev/null && command -v journalctl >/dev/null || return 0
	rm -rf "$W/journal"
	mkdir -p "$W/journal"
	debugfs -R "rdump /var/log/journal $W/journal" "$O/root.img" >/dev/null 2>&1 || return 0
	d=$(dirname "$(find "$W/journal" -name 'system*.journal' | head -n 1)")
	[ -d "$d" ] || return 0
	echo "---- the VM's journal ($d): sdvm-test and tapdisk@*"
	journalctl -D "$d" --no-pager -o short-monotonic -u sdvm-test -u 'tapdisk@*' | tail -n 150
}

boot() {
	local L=$W/serial.log t0 el=0 up_t="" res_t="" rc=1
	trap cleanup EXIT INT TERM
	: >"$L"
	log "qemu-system-x86_64 ${QEMU_ARGS[*]} -serial file:$L -append '$KARGS'"
	t0=$(date +%s)
	nice -n 15 qemu-system-x86_64 "${QEMU_ARGS[@]}" -serial "file:$L" -append "$KARGS" &
	QPID=$!
	while :; do
		sleep 1
		el=$(($(date +%s) - t0))
		if [ -z "$up_t" ] && grep -qaE 'SYSTEMDVM: \[[0-9]+s\] systemd is up' "$L"; then
			up_t=$el
			log "systemd up, the test unit started after ${up_t} s"
		fi
		# the result, then the power-off (at most a minute: then it is killed)
		if grep -qa 'SYSTEMDVM-RESULT=' "$L"; then
			[ -n "$res_t" ] || res_t=$el
			if ! kill -0 "$QPID" 2>/dev/null || [ $((el - res_t)) -gt 60 ]; then
				break
			fi
		fi
		if grep -qa 'Kernel panic' "$L"; then
			sleep 2
			log "kernel panic"
			break
		fi
		kill -0 "$QPID" 2>/dev/null || {
			log "qemu exited"
			break
		}
		if [ "$el" -gt "$TIMEOUT" ]; then
			log "TIMEOUT after $el s"
			break
		fi
	done
	cleanup
	QPID=
	grep -qa 'SYSTEMDVM-RESULT=PASS' "$L" && rc=0
	tr -d '\r' <"$L" | grep -a 'SYSTEMDVM' >"$W/result.txt" || true
	if [ $rc = 0 ]; then
		cat "$W/result.txt"
		log "PASS after $el s (the test unit started after ${up_t:-?} s); console: $L"
	else
		echo "---- the last 300 lines of the console ($L)"
		tail -n 300 "$L" | tr -d '\r'
		vm_journal
		log "FAIL after $el s: $(grep -a 'SYSTEMDVM-RESULT=' "$L" | tr -d '\r' | head -n 1)"
	fi
	return $rc
}

case "$MODE" in
base) base ;;
build) base && fetch && build ;;
boot) boot ;;
shell)
	# -snapshot: the changes of the shell's initramfs stay out of root.img
	exec qemu-system-x86_64 "${QEMU_ARGS[@]}" -snapshot -serial mon:stdio -append "$KARGS sdvm.shell"
	;;
all)
	start=$(date +%s)
	base
	fetch
	build
	built=$(date +%s)
	rc=0
	boot || rc=$?
	log "make check-systemd: $(($(date +%s) - start)) s in all ($((built - start)) s to build, $(($(date +%s) - built)) s to boot and test)"
	exit $rc
	;;
esac
