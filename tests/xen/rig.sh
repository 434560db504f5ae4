#!/bin/bash
# The real-Xen test (make check-xen): boots the Xen 4.17 hypervisor and a
# Debian 12 dom0 kernel under QEMU without KVM (TCG), with our tapdisk,
# tap-ctl, vdkey, tapback and the block-tdcrypt hotplug script in dom0, and
# runs tests/xen/dom0-test.sh there: PV guests started with stock `xl create`
# whose data disks are crypt:qcow2 (and aio:) VBDs served over the blkif
# ring by tapdisk. The guest side is tests/xen/domu-init.sh and the static
# programs of tests/xen/guest/. docs/XEN.md describes what is checked.
#
# Usage: tests/xen/rig.sh [all|fetch|build|boot|shell]    (default all)
#   all    fetch the pinned Debian packages (cached), build both initramfs
#          images, boot, run the test; exit 0 only when dom0 printed PASS
#   shell  boot the built images with the serial console on this terminal
#          (the test runs, then dom0 gives a shell; Ctrl-a x quits QEMU)
# Needs root (mknod in the images, loop devices nowhere on this host) and
# qemu-system-x86_64; exits 77 (skipped) without them.
# Environment: XENRIG_WORK (default build/xen-rig: debs/ is the package
# cache, serial.log the whole console), XENRIG_TIMEOUT (seconds, 1200),
# XENRIG_PHASES (dom0-test phases to run, default all of them),
# XENRIG_PIN=0 (take the mirror's current versions instead of the pins),
# XENRIG_PHASES=profile (not part of all: strace -c on the tapdisk of one
# bench guest per datapath, system calls per request; slows what it counts),
# XENRIG_BENCH_SECS (seconds per iobench test, 5), XENRIG_BENCH_ROUNDS
# (alternating rounds of ours and xen-blkback, 2), XENRIG_BENCH_BLKBACK=0
# (bench our disks only).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
W=${XENRIG_WORK:-$SRC/$BUILD/xen-rig}
TIMEOUT=${XENRIG_TIMEOUT:-1200}
PHASES=${XENRIG_PHASES:-all}
MODE=${1:-all}
XENVER=4.17

# Pinned versions (Debian 12 "bookworm" and bookworm-security, as tested).
PIN_XEN=4.17.7+13-g2445b30a44-0+deb12u1
PIN_KPKG=linux-image-6.1.0-57-amd64
PIN_KVER=6.1.192-3
PIN_BUSYBOX=1:1.35.0-4+deb12u1+b1
PIN_YAJL=2.1.0-3+deb12u2

log() { echo "[xenrig $(date +%T)] $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
skip() {
	echo "SKIP: $*"
	exit 77
}

case "$MODE" in all | fetch | build | boot | shell) ;; *) die "usage: $0 [all|fetch|build|boot|shell]" ;; esac
[ "$(id -u)" = 0 ] || skip "the Xen rig needs root (device nodes in the images)"
command -v qemu-system-x86_64 >/dev/null ||
	skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
for t in cpio gzip depmod modprobe dpkg-deb apt-get ldd gcc; do
	command -v $t >/dev/null || skip "$t is not installed"
done

# ---------------------------------------------------------------- fetch ----
fetch() {
	mkdir -p "$W/debs"
	local pkgs=(
		"xen-hypervisor-$XENVER-amd64=$PIN_XEN" "xen-utils-$XENVER=$PIN_XEN"
		"xen-utils-common=$PIN_XEN" "xenstore-utils=$PIN_XEN" "libxencall1=$PIN_XEN"
		"libxenevtchn1=$PIN_XEN" "libxenforeignmemory1=$PIN_XEN" "libxengnttab1=$PIN_XEN"
		"libxenmisc$XENVER=$PIN_XEN" "libxenstore4=$PIN_XEN" "libxentoollog1=$PIN_XEN"
		"libxentoolcore1=$PIN_XEN" "libxendevicemodel1=$PIN_XEN" "libxenhypfs1=$PIN_XEN"
		"libyajl2=$PIN_YAJL" "busybox-static=$PIN_BUSYBOX" "$PIN_KPKG=$PIN_KVER")
	local p name todo=()
	for p in "${pkgs[@]}"; do
		name=${p%%=*}
		ls "$W/debs/${name}_"*.deb >/dev/null 2>&1 && continue
		if [ "${XENRIG_PIN:-1}" = 0 ]; then todo+=("$name"); else todo+=("$p"); fi
	done
	if [ ${#todo[@]} -gt 0 ]; then
		log "apt-get download ${todo[*]}"
		if ! (cd "$W/debs" && apt-get download "${todo[@]}" >"$W/apt.log" 2>&1); then
			log "download failed; apt-get update and retry"
			apt-get update >/dev/null 2>&1 || true
			(cd "$W/debs" && apt-get download "${todo[@]}" >"$W/apt.log" 2>&1) || {
				cat "$W/apt.log" >&2
				die "apt-get download failed (a pinned version gone from the mirror? XENRIG_PIN=0 takes the current ones)"
			}
		fi
	fi
	ls "$W"/debs/*.deb | sed 's#.*/##' >"$W/versions.txt"
}

S=$W/stage
LIBPATH=$S/usr/lib/x86_64-linux-gnu:$S/lib/x86_64-linux-gnu

unpack() {
	rm -rf "$S"
	mkdir -p "$S"
	local p
	for p in "$W"/debs/*.deb; do dpkg-deb -x "$p" "$S"; done
}

# copy_elf ROOT SRC DST: an ELF and its shared libraries (the staged Xen
# libraries first, then the host's), in Debian's directory layout
copy_elf() {
	local root=$1 src=$2 dst=$3 lib rel
	mkdir -p "$root$(dirname "$dst")"
	rm -f "$root$dst" # a busybox applet of the same name
	cp -L "$src" "$root$dst"
	for lib in $(LD_LIBRARY_PATH=$LIBPATH ldd "$src" 2>/dev/null |
		awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
		rel=${lib#"$S"}
		case "$rel" in /lib64/* | /lib/* | /usr/lib/*) ;; *) die "odd library path $lib" ;; esac
		[ -e "$root$rel" ] && continue
		mkdir -p "$root$(dirname "$rel")"
		cp -L "$lib" "$root$rel"
	done
}

busybox_root() {
	local root=$1 a
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,etc,root,mnt,var}
	cp "$S/bin/busybox" "$root/bin/busybox"
	for a in $("$root/bin/busybox" --list-full); do
		[ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
	done
	# the kernel opens /dev/console before /init runs
	mknod -m 600 "$root/dev/console" c 5 1
	mknod -m 666 "$root/dev/null" c 1 3
	ln -sfn ../run "$root/var/run"
	echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
	echo "root:x:0:" >"$root/etc/group"
}

# add_modules ROOT KVER LIST MODULE...: the modules and their dependencies,
# in load order, listed in ROOT/LIST for /init's insmod loop
add_modules() {
	local root=$1 kver=$2 list=$3 m line ko
	shift 3
	: >"$root/$list"
	for m in "$@"; do
		modprobe -d "$S" -S "$kver" --show-depends "$m" >"$W/deps.tmp" || die "modprobe $m"
		while read -r line; do
			case "$line" in
			insmod\ *)
				ko=$(echo "$line" | awk '{print $2}')
				ko=${ko#"$S"}
				grep -qx "$ko" "$root/$list" && continue
				mkdir -p "$root$(dirname "$ko")"
				cp "$S$ko" "$root$ko"
				echo "$ko" >>"$root/$list"
				;;
			builtin\ *) ;;
			*) die "modprobe: $line" ;;
			esac
		done <"$W/deps.tmp"
	done
}

mkcpio() { (cd "$1" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$2"; }

# ---------------------------------------------------------------- build ----
BIN=$SRC/$BUILD/bin
XBIN=$SRC/$BUILD/xen

images() { # the guests' disks, formatted here (the keys are loaded in dom0)
	local srv=$1 v size
	mkdir -p "$srv" "$W/state"
	for v in vm1:64M vm2:16M vm3:16M vm4:256M; do
		size=${v#*:}
		v=${v%:*}
		qemu-img create -q -f qcow2 "$srv/$v.qcow2" "$size" || die "qemu-img create $v"
		head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$srv/$v.key"
		TDCRYPT_STATE_DIR=$W/state "$BIN/vdkey" format "qcow2:$srv/$v.qcow2" \
			--key-file "$srv/$v.key" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
			die "vdkey format $v"
	done
}

build() {
	local p kver
	for p in "$BIN/tapdisk" "$BIN/tap-ctl" "$BIN/vdkey" "$XBIN/tapback"; do
		[ -x "$p" ] || die "$p is not built (make)"
	done
	command -v qemu-img >/dev/null || skip "qemu-img is not installed"
	command -v keyctl >/dev/null || skip "keyctl (keyutils) is not installed"
	command -v mke2fs >/dev/null || skip "mke2fs (e2fsprogs) is not installed"
	unpack
	kver=$(ls "$S/lib/modules" | head -n 1)
	[ -n "$kver" ] || die "no kernel in the staged packages"
	depmod -b "$S" "$kver"
	mkdir -p "$W/out" "$W/guest"
	zcat "$S/boot/xen-$XENVER-amd64.gz" >"$W/out/xen.elf" # QEMU's multiboot wants the ELF
	cp "$S/boot/vmlinuz-$kver" "$W/out/vmlinuz"
	for p in wlog iobench; do
		gcc -static -O2 -Wall -Wextra -Werror -pthread -o "$W/guest/$p" "$SRC/tests/xen/guest/$p.c" ||
			die "building the guest's $p"
	done

	# ---- the guest: busybox, blkfront, ext4, mke2fs, our checkers
	local U=$W/domuroot
	rm -rf "$U"
	busybox_root "$U"
	add_modules "$U" "$kver" modules.list xen-blkfront ext4
	copy_elf "$U" "$(command -v mke2fs)" /sbin/mke2fs
	[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$U/etc/"
	cp "$W/guest/wlog" "$W/guest/iobench" "$U/bin/"
	install -m 755 "$SRC/tests/xen/domu-init.sh" "$U/init"
	mkcpio "$U" "$W/out/domu.cpio.gz"

	# ---- dom0: Xen's tools, ours, the hotplug script, the images
	local R=$W/dom0root
	rm -rf "$R"
	busybox_root "$R"
	add_modules "$R" "$kver" modules.list xen-privcmd xenfs xen-evtchn xen-gntdev xen-gntalloc loop
	add_modules "$R" "$kver" modules-blkback.list xen-blkback
	for p in xenstored xenconsoled xenconsole xl xen-init-dom0 libxl-save-helper xenstore-control; do
		copy_elf "$R" "$S/usr/lib/xen-$XENVER/bin/$p" "/usr/lib/xen-$XENVER/bin/$p"
	done
	for p in xenstore xenstore-read xenstore-write xenstore-rm xenstore-exists xenstore-list \
		xenstore-ls xenstore-chmod xenstore-watch; do
		copy_elf "$R" "$S/usr/bin/$p" "/usr/bin/$p"
	done
	cp -a "$S"/usr/lib/x86_64-linux-gnu/lib{xen,yajl}* "$R/usr/lib/x86_64-linux-gnu/"
	# Xen's hotplug scripts are bash; Debian's busybox has no flock applet
	rm -f "$R/bin/bash" "$R/usr/bin/flock"
	copy_elf "$R" /bin/bash /bin/bash
	copy_elf "$R" /usr/bin/flock /usr/bin/flock
	# glibc dlopen()s libgcc_s for pthread_cancel; ldd does not list it
	cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$R/lib/x86_64-linux-gnu/"
	mkdir -p "$R/etc/xen" "$R/var/lib/xen" "$R/var/log/xen" "$R/var/lock" "$R/var/lib/xenstored"
	cp -a "$S/etc/xen/." "$R/etc/xen/"
	# ours, installed as docs/XEN.md says
	for p in "$BIN/tapdisk" "$BIN/tap-ctl" "$BIN/vdkey" "$XBIN/tapback"; do
		copy_elf "$R" "$p" "/usr/sbin/$(basename "$p")"
	done
	# the profile phase's syscall counter (optional: the phase says when missing)
	if command -v strace >/dev/null; then
		copy_elf "$R" "$(command -v strace)" /usr/bin/strace
	fi
	rm -f "$R/bin/keyctl" "$R/usr/bin/keyctl"
	copy_elf "$R" "$(command -v keyctl)" /usr/bin/keyctl
	install -m 755 "$SRC/xen/block-tdcrypt" "$R/etc/xen/scripts/block-tdcrypt"
	mkdir -p "$R/etc/tdcrypt" "$R/var/lib/tdcrypt"
	chmod 700 "$R/var/lib/tdcrypt"
	echo "uid-range = 1895825408-1895890943" >"$R/etc/tdcrypt/tapdisk.conf"
	images "$R/srv"
	mkdir -p "$R/guest" "$R/etc/xenrig"
	cp "$W/out/vmlinuz" "$W/out/domu.cpio.gz" "$R/guest/"
	install -m 755 "$SRC/tests/xen/dom0-init.sh" "$R/init"
	cp "$SRC/tests/xen/dom0-test.sh" "$R/etc/xenrig/"
	echo "$PHASES" >"$R/etc/xenrig/phases"
	echo "${XENRIG_BENCH_SECS:-5}" >"$R/etc/xenrig/bench-secs"
	echo "${XENRIG_BENCH_BLKBACK:-1}" >"$R/etc/xenrig/bench-blkback"
	echo "${XENRIG_BENCH_ROUNDS:-2}" >"$R/etc/xenrig/bench-rounds"
	mkcpio "$R" "$W/out/dom0.cpio.gz"
	log "built: $(cd "$W/out" && ls -s --block-size=M | tr '\n' ' ')"
}

# ---------------------------------------------------------------- boot -----
QPID=
cleanup() {
	if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
		kill "$QPID"
		wait "$QPID" 2>/dev/null || true
	fi
}
XEN_ARGS="console=com1 com1=115200,8n1 dom0_mem=2048M,max:2048M dom0_max_vcpus=1 noreboot loglvl=all guest_loglvl=all"
DOM0_ARGS="console=hvc0 earlyprintk=xen rdinit=/init"
QEMU_ARGS=(-accel tcg -machine pc -cpu qemu64 -smp 2 -m 3584 -display none -monitor none -no-reboot
	-kernel "$W/out/xen.elf" -append "$XEN_ARGS")

boot() {
	local L=$W/serial.log t0 el=0 up_t="" rc=1
	trap cleanup EXIT INT TERM
	: >"$L"
	log "qemu-system-x86_64 ${QEMU_ARGS[*]} -serial file:$L -initrd '$W/out/vmlinuz $DOM0_ARGS,$W/out/dom0.cpio.gz'"
	t0=$(date +%s)
	qemu-system-x86_64 "${QEMU_ARGS[@]}" -serial "file:$L" \
		-initrd "$W/out/vmlinuz $DOM0_ARGS,$W/out/dom0.cpio.gz" &
	QPID=$!
	while :; do
		sleep 1
		el=$(($(date +%s) - t0))
		if [ -z "$up_t" ] && grep -qa 'XENRIG-DOM0-UP' "$L"; then
			up_t=$el
			log "dom0 up after ${up_t} s"
		fi
		if grep -qa 'XENRIG-RESULT=PASS' "$L"; then
			rc=0
			break
		fi
		grep -qa 'XENRIG-RESULT=FAIL' "$L" && break
		if grep -qaE 'Panic on CPU|Kernel panic|\(XEN\) Reboot disabled' "$L"; then
			sleep 2
			log "panic"
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
	sleep 1
	cleanup
	QPID=
	grep -a -e '^dom0\[' -e 'XENRIG-' "$L" | tr -d '\r' >"$W/result.txt"
	if [ $rc = 0 ]; then
		cat "$W/result.txt"
		log "PASS after $el s (dom0 up after ${up_t:-?} s); console: $L"
	else
		echo "---- the last 400 lines of the console ($L)"
		tail -n 400 "$L" | tr -d '\r'
		log "FAIL after $el s: $(grep -a 'XENRIG-RESULT=FAIL' "$L" | tr -d '\r' | head -n 1)"
	fi
	return $rc
}

case "$MODE" in
fetch) fetch ;;
build) fetch && build ;;
boot) boot ;;
shell)
	exec qemu-system-x86_64 "${QEMU_ARGS[@]/-display/-display}" -serial mon:stdio \
		-initrd "$W/out/vmlinuz $DOM0_ARGS xenrig.shell,$W/out/dom0.cpio.gz"
	;;
all)
	start=$(date +%s)
	fetch
	build
	rc=0
	boot || rc=$?
	log "make check-xen: $(($(date +%s) - start)) s in all"
	exit $rc
	;;
esac
