# The rig's test, run in dom0 (sourced by tests/xen/dom0-init.sh; busybox
# sh). A host set up as docs/XEN.md says: block-tdcrypt installed in
# /etc/xen/scripts, tapback running, xen-blkback not loaded, the images'
# keys loaded with vdkey. Then PV guests started with stock xl whose data
# disks are tapdisk VBDs over the blkif ring:
#   fs      boot 1: mkfs.ext4 + files + checksums on crypt:qcow2, an
#           access=ro disk refuses writes; the plaintext is not in the
#           image; boot 2: every checksum verified, xl block-attach /
#           block-detach of a second crypt:qcow2 disk under a file load
#   wlog    xl save + xl restore under a sequence-numbered O_DIRECT write
#           load; the guest checks every acknowledged write (wlog.c)
#   bench   iobench on aio: (ours) and crypt:qcow2, then xen-blkback is
#           loaded and the same raw image is served through a loop device
# Phases to run: /etc/xenrig/phases (default: all).
XR=/etc/xenrig
CON=/var/log/xen/console
PHASES=$(cat $XR/phases 2>/dev/null || echo all)
T0=$(up)

log() { echo "dom0[$(up)]: $*"; }
since() { echo "$(up) $1" | awk '{printf "%.1f s", $1 - $2}'; }
guestlog() { # NAME: the guest's console so far
	grep -av '^\s*$' "$CON/guest-$1.log" 2>/dev/null | tr -d '\r'
}
dump() {
	echo "--- tapback log"
	tail -n 60 /var/log/xen/tapback.log
	echo "--- tapdisk log: warnings and errors"
	grep -a "warn\|error\|fail" /run/tapdisk/tapdisk.log 2>/dev/null | tail -n 40
	echo "--- tapdisk log"
	tail -n 60 /run/tapdisk/tapdisk.log 2>/dev/null
	for f in /var/log/xen/xl-*.log; do
		[ -f "$f" ] || continue
		echo "--- $f"
		tail -n 40 "$f"
	done
	echo "--- tap-ctl list"
	tap-ctl list
	echo "--- xenstore backend"
	xenstore-ls -f /local/domain/0/backend 2>/dev/null | head -n 80
	for f in "$CON"/guest-*.log; do
		[ -f "$f" ] || continue
		echo "--- guest console $f (the last 30 lines)"
		grep -av '^\s*$' "$f" | tr -d '\r' | tail -n 30
	done
	echo "--- dmesg (tail)"
	dmesg | tail -n 30
}
die() {
	dump
	fail "$*"
}
# nap SECONDS: sleeps without starting a program (a read that times out)
mkfifo /tmp/nap.fifo 2>/dev/null
nap() { read -t "$1" _ <>/tmp/nap.fifo; }
# expect NAME PATTERN [SECONDS]: waits for a line of the guest's console.
# It reads the log with the shell's own read and naps between looks, and
# asks xl whether the guest lives only every 10 s: a poll that started
# programs every second stole dom0's one CPU from the tapdisk (under TCG a
# PV fork+exec is dear) and skewed the bench.
expect() {
	f="$CON/guest-$1.log" n=0 acc="" line=""
	while [ ! -f "$f" ] && [ $n -lt 600 ]; do
		nap 0.5
		n=$((n + 1))
	done
	exec 3<"$f"
	n=0
	while :; do
		if IFS= read -r line <&3; then
			line="$acc$line"
			acc=""
			case "$line" in *"$2"*)
				exec 3<&-
				return 0
				;;
			esac
			continue
		fi
		acc="$acc$line" # a last line not complete yet
		nap 0.5
		n=$((n + 1))
		[ $n -ge $((${3:-120} * 2)) ] && die "guest $1: no '$2' after ${3:-120} s"
		if [ $((n % 20)) = 0 ] && ! xl list "$1" >/dev/null 2>&1; then
			exec 3<&-
			guestlog "$1" | grep -q -- "$2" && return 0
			die "guest $1 ended without '$2'"
		fi
	done
}
# guest NAME PHASE 'disk' ...: writes NAME.cfg and starts it
guest() {
	name=$1 phase=$2
	shift 2
	disks=""
	for d in "$@"; do disks="$disks '$d',"; done
	cat >/etc/xen/$name.cfg <<EOF
name = "$name"
type = "pv"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/domu.cpio.gz"
extra = "console=hvc0 rdinit=/init xenrig.phase=$phase ${EXTRA:-}"
memory = 192
vcpus = 1
disk = [ $disks ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
EOF
	rm -f "$CON/guest-$name.log"
	# the guest's console, as it comes, on ours (guest lines start "domU:" or "[")
	[ -n "${TAILPID:-}" ] && kill "$TAILPID" 2>/dev/null
	tail -F "$CON/guest-$name.log" 2>/dev/null &
	TAILPID=$!
	log "xl create $name.cfg (phase $phase):$disks"
	xl create /etc/xen/$name.cfg >/tmp/xl.out 2>&1 || {
		cat /tmp/xl.out
		die "xl create $name ($phase)"
	}
}
# gone NAME [SECONDS]: waits until the guest has powered off
gone() {
	i=0
	while xl list "$1" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -gt $((${2:-300} * 2)) ] && {
			xl destroy "$1"
			die "guest $1 still running after ${2:-300} s"
		}
		sleep 0.5
	done
	# the backend of every disk torn down: no tapdisk left behind
	i=0
	while [ -n "$(tap-ctl list)" ] && [ $i -lt 50 ]; do
		sleep 0.2
		i=$((i + 1))
	done
	[ -z "$(tap-ctl list)" ] || die "tapdisks left after guest $1: $(tap-ctl list)"
}
want() { # PHASE: is it to run
	case " $PHASES " in *" all "* | *" $1 "*) return 0 ;; esac
	return 1
}
ours() { echo "format=raw,vdev=$1,access=${3:-rw},script=block-tdcrypt,target=$2"; }

# ---- the host set-up (docs/XEN.md) ---------------------------------------------
lsmod | grep -q '^xen_blkback' && die "xen-blkback is loaded"
[ -x /etc/xen/scripts/block-tdcrypt ] || die "block-tdcrypt is not installed"
tapback >/var/log/xen/tapback.log 2>&1 &
i=0
until grep -q watching /var/log/xen/tapback.log; do
	i=$((i + 1))
	[ $i -gt 50 ] && die "tapback did not start"
	sleep 0.1
done
for v in vm1 vm2 vm3 vm4; do
	vdkey load "crypt:qcow2:/srv/$v.qcow2" --key-file "/srv/$v.key" >/dev/null ||
		die "vdkey load $v"
done
log "set-up done: tapback running, keys loaded, xen-blkback not loaded"

# ---- fs: two boots, ro disk, ciphertext, hotplug -----------------------------------
if want fs; then
	dd if=/dev/urandom of=/tmp/ropat bs=1M count=4 2>/dev/null
	dd if=/dev/zero of=/srv/ro.img bs=1M count=16 2>/dev/null
	dd if=/tmp/ropat of=/srv/ro.img conv=notrunc 2>/dev/null
	ROMD5=$(md5sum </tmp/ropat | cut -d' ' -f1)
	RO_BEFORE=$(md5sum </srv/ro.img | cut -d' ' -f1)
	t=$(up)
	guest rigu fs1 "$(ours xvdb crypt:qcow2:/srv/vm1.qcow2)" "$(ours xvdc aio:/srv/ro.img ro)"
	expect rigu "FS-WRITE-OK" 300
	expect rigu "domU: done" 120
	gone rigu
	guestlog rigu | grep -q "RO-WRITE-REFUSED ro=1" || die "the access=ro disk took a write"
	guestlog rigu | grep -q "RO-READ md5=$ROMD5" || die "the guest did not read the ro disk"
	[ "$(md5sum </srv/ro.img | cut -d' ' -f1)" = "$RO_BEFORE" ] || die "the ro image changed"
	grep -q "blkif: domain [0-9]* connected" /run/tapdisk/tapdisk.log ||
		die "no blkif connection in the tapdisk log"
	log "PASS fs1: mkfs.ext4 + $(guestlog rigu | grep -c 'domU: sum') files on crypt:qcow2 over blkif, ro disk refused writes ($(since $t))"
	# the plaintext is not in the image (the guest wrote 1 MiB of it)
	grep -q "TDCRYPT-PLAINTEXT-MARKER" /srv/vm1.qcow2 && die "plaintext marker found in vm1.qcow2"
	log "PASS ciphertext at rest: no TDCRYPT-PLAINTEXT-MARKER in vm1.qcow2 ($(ls -l /srv/vm1.qcow2 | awk '{print $5}') bytes)"
	guestlog rigu | grep "domU: sum" | sed 's/.*domU: sum //' >/tmp/sums1

	t=$(up)
	guest rigu fs2 "$(ours xvdb crypt:qcow2:/srv/vm1.qcow2)"
	expect rigu "FS-VERIFY" 300
	guestlog rigu | grep -q "FS-VERIFY-OK" || die "checksums differ after the second boot"
	expect rigu "HOTPLUG-WAITING" 60
	xl block-attach rigu "$(ours xvdd crypt:qcow2:/srv/vm2.qcow2)" >/tmp/xl.out 2>&1 || {
		cat /tmp/xl.out
		die "xl block-attach"
	}
	log "xl block-attach xvdd done"
	expect rigu "HOTPLUG-ATTACH-" 120
	guestlog rigu | grep -q "HOTPLUG-ATTACH-OK" || die "the attached disk failed"
	xl block-detach rigu xvdd >/tmp/xl.out 2>&1 || {
		cat /tmp/xl.out
		die "xl block-detach"
	}
	log "xl block-detach xvdd done"
	expect rigu "HOTPLUG-DETACH-" 120
	guestlog rigu | grep -q "HOTPLUG-DETACH-OK" || die "xvdd did not go away"
	expect rigu "domU: done" 120
	guestlog rigu | grep -q "LOAD-OK" || die "the file load failed during attach/detach"
	gone rigu
	log "PASS fs2: every checksum verified on the second boot; xvdd attached, written, read, detached under load: $(guestlog rigu | grep -o 'LOAD-OK.*') ($(since $t))"
fi

# ---- wlog: xl save + xl restore under writes -----------------------------------------
if want wlog; then
	# on crypt:qcow2 (copied through our buffer), then on aio: (its 4 KiB
	# writes go in place through the kept mappings: docs/XEN.md)
	dd if=/dev/zero of=/srv/wlog.img bs=1M count=64 2>/dev/null
	for wspec in crypt:qcow2:/srv/vm3.qcow2 aio:/srv/wlog.img; do
		t=$(up)
		dd if=/dev/zero of=/srv/stop.img bs=1M count=1 2>/dev/null
		guest rigu wlog "$(ours xvdb $wspec)"
		expect rigu "WLOG progress" 300
		sleep 3
		before=$(guestlog rigu | grep -c "WLOG progress")
		log "xl save (after $before progress lines)"
		xl save rigu /srv/rigu.save >/tmp/xl.out 2>&1 || {
			cat /tmp/xl.out
			die "xl save"
		}
		xl list rigu >/dev/null 2>&1 && die "the guest still runs after xl save"
		[ -z "$(tap-ctl list)" ] || die "tapdisk left after xl save: $(tap-ctl list)"
		log "saved ($(ls -l /srv/rigu.save | awk '{print $5}') bytes), tapdisk gone; xl restore"
		xl restore /srv/rigu.save >/tmp/xl.out 2>&1 || {
			cat /tmp/xl.out
			die "xl restore"
		}
		rm -f /srv/rigu.save
		i=0
		while [ "$(guestlog rigu | grep -c 'WLOG progress')" -le $((before + 2)) ]; do
			i=$((i + 1))
			[ $i -gt 600 ] && die "no write progress after xl restore"
			xl list rigu >/dev/null 2>&1 || die "the guest died after restore"
			nap 1
		done
		log "writes go on after restore; attaching xvdz (the stop signal)"
		xl block-attach rigu "$(ours xvdz aio:/srv/stop.img)" >/tmp/xl.out 2>&1 || {
			cat /tmp/xl.out
			die "xl block-attach xvdz"
		}
		expect rigu "WLOG-" 300
		expect rigu "domU: done" 120
		guestlog rigu | grep -q "WLOG-OK" || die "the write checker failed"
		gone rigu
		log "blkif counters: $(grep -a 'blkif: domain .* disconnected' /run/tapdisk/tapdisk.log | tail -n 2 | sed 's/.*disconnected//' | tr '\n' ' ')"
		log "PASS wlog ($wspec): xl save + xl restore under load: $(guestlog rigu | grep -o 'WLOG-OK.*') ($(since $t))"
	done
fi

# ---- bench: ours against xen-blkback on the same raw image ------------------------
# Rounds alternate (ours, then blkback, ROUNDS times) so that a change in the
# host's load between the two falls on both; a ratio is the sum of our
# figures over the rounds divided by the sum of blkback's.
bench_guest() { # LABEL DISK... : one boot of the bench guest
	label=$1
	shift
	EXTRA="xenrig.secs=$SECS xenrig.label=$label ${BENCH_EXTRA:-}" guest rigu bench "$@"
	expect rigu "IOBENCH " 300
	c0=$(head -n 1 /proc/stat)
	expect rigu "domU: done" 600
	c1=$(head -n 1 /proc/stat)
	# where dom0's one CPU went while the guest measured (USER_HZ ticks)
	echo "$c0 $c1" | awk -v l="$label" '{printf "dom0[cpu]: %s: user %d nice %d system %d idle %d iowait %d irq %d softirq %d steal %d\n", l, $13-$2, $14-$3, $15-$4, $16-$5, $17-$6, $18-$7, $19-$8, $20-$9}'
	gone rigu
	guestlog rigu | grep -q "IOBENCH-FAIL" && die "iobench failed ($label)"
	guestlog rigu | grep "IOBENCH" | sed 's/.*IOBENCH/IOBENCH/' >>/tmp/bench
}
sum() { # LABEL TEST FIELD: the sum over the rounds
	sed -n "s/.*label=$1-r[0-9]* test=$2 .*$3=\([0-9.]*\).*/\1/p" /tmp/bench |
		awk '{s += $1} END {printf "%.2f", s}'
}
if want bench; then
	t=$(up)
	SECS=$(cat $XR/bench-secs 2>/dev/null || echo 5)
	ROUNDS=$(cat $XR/bench-rounds 2>/dev/null || echo 2)
	dd if=/dev/zero of=/srv/raw.img bs=1M count=256 2>/dev/null
	: >/tmp/bench
	r=1
	while [ $r -le "$ROUNDS" ]; do
		if [ $r = 1 ]; then # crypt:qcow2 beside it, once
			bench_guest "tapdisk-aio-r$r" "$(ours xvdb aio:/srv/raw.img)" \
				"$(ours xvdc crypt:qcow2:/srv/vm4.qcow2)"
		else
			bench_guest "tapdisk-aio-r$r" "$(ours xvdb aio:/srv/raw.img)"
		fi
		grep -a "blkif: domain .* connected" /run/tapdisk/tapdisk.log | tail -n 1 |
			grep -q "persistent grants" || die "our bench disk got no persistent grants"
		log "tapdisk-aio-r$r: $(grep -a "blkif: domain .* disconnected" /run/tapdisk/tapdisk.log | tail -n 2 | tr '\n' ' ')"
		# the same disk under a pass-through layer (qos without limits): with a
		# layer above the image the data is copied through the kept mappings
		# instead of going in place (docs/XEN.md, "In place")
		bench_guest "tapdisk-pcopy-r$r" "$(ours xvdb qos:aio:/srv/raw.img)"
		grep -a "blkif: domain .* disconnected" /run/tapdisk/tapdisk.log | tail -n 1 |
			grep -q " 0 in place" || log "WARNING: the qos:aio disk went in place (or no disconnect line)"
		# the same disk with the guest's blkfront told not to use persistent
		# grants: every segment grant-copied (the datapath before them)
		BENCH_EXTRA=xenrig.nopersistent bench_guest "tapdisk-gcopy-r$r" \
			"$(ours xvdb aio:/srv/raw.img)"
		grep -a "blkif: domain .* connected" /run/tapdisk/tapdisk.log | tail -n 1 |
			grep -q "persistent grants" && die "the nopersistent guest got persistent grants"
		[ "$(cat $XR/bench-blkback 2>/dev/null)" = 0 ] && break
		# the kernel's backend, on the same image through a loop device
		while read -r m; do insmod "$m" || die "insmod $m"; done </modules-blkback.list
		losetup /dev/loop0 /srv/raw.img || die "losetup"
		bench_guest "blkback-loop-r$r" "format=raw,vdev=xvdb,access=rw,target=/dev/loop0"
		losetup -d /dev/loop0
		if [ $r = 1 ]; then
			# with xen-blkback loaded, our disks are refused (it would take their rings)
			cat >/etc/xen/refused.cfg <<EOF
name = "refused"
type = "pv"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/domu.cpio.gz"
memory = 192
disk = [ '$(ours xvdb aio:/srv/raw.img)' ]
EOF
			xl create /etc/xen/refused.cfg >/tmp/xl.out 2>&1 &&
				die "xl create worked with xen-blkback loaded"
			grep -q "xen-blkback is loaded" /tmp/xl.out || {
				cat /tmp/xl.out
				die "xl did not say why the disk was refused"
			}
			[ -z "$(tap-ctl list)" ] || die "a tapdisk was started with xen-blkback loaded"
			log "PASS with xen-blkback loaded, xl create refuses a block-tdcrypt disk: $(grep -o 'script: xen-blkback is loaded[^;]*' /tmp/xl.out | head -n 1)"
		fi
		# unloaded again (in reverse order) for our next round
		for m in $(sed 's#.*/##; s/\.ko$//' /modules-blkback.list | sed -n '1!G;h;$p'); do
			rmmod "$m" 2>/dev/null
		done
		lsmod | grep -q '^xen_blkback' && die "xen-blkback could not be unloaded"
		r=$((r + 1))
	done
	cat /tmp/bench
	if [ "$(cat $XR/bench-blkback 2>/dev/null)" != 0 ]; then
		for qd in "" -qd4; do
			for test in seqread seqwrite randread randwrite; do
				q=${qd#-}
				o=$(sum "tapdisk-aio$qd" $test MBps)
				k=$(sum "blkback-loop$qd" $test MBps)
				oi=$(sum "tapdisk-aio$qd" $test IOPS)
				ki=$(sum "blkback-loop$qd" $test IOPS)
				c=""
				[ -z "$qd" ] && c=$(sed -n "s/.*label=tapdisk-aio-r1-xvdc test=$test .*MBps=\([0-9.]*\) IOPS=\([0-9.]*\).*/\1 \2/p" /tmp/bench)
				g=$(sum "tapdisk-gcopy$qd" $test MBps)
				pc=$(sum "tapdisk-pcopy$qd" $test MBps)
				echo "$test ${q:-qd1} $pc $k" | awk '{printf "XENRIG-PERF-PCOPY %-9s %-3s tapdisk qos:aio (persistent, copied) %8.2f MB/s | ratio %.2f\n", $1, $2, $3 / '"$ROUNDS"', ($4 > 0 ? $3 / $4 : 0)}'
				echo "$test ${q:-qd1} $g $k" | awk '{printf "XENRIG-PERF-GCOPY %-9s %-3s tapdisk-aio without persistent grants %8.2f MB/s | ratio %.2f\n", $1, $2, $3 / '"$ROUNDS"', ($4 > 0 ? $3 / $4 : 0)}'
				echo "$test ${q:-qd1} $o $oi $k $ki $ROUNDS ${c:-- -}" | awk '{printf "XENRIG-PERF %-9s %-3s tapdisk-aio %8.2f MB/s %8.1f IOPS | blkback-loop %8.2f MB/s %8.1f IOPS | ratio %.2f (sums of %d rounds)", $1, $2, $3 / $7, $4 / $7, $5 / $7, $6 / $7, ($5 > 0 ? $3 / $5 : 0), $7; if ($8 != "-") printf " | crypt:qcow2 %.2f MB/s %.1f IOPS", $8, $9; printf "\n"}'
			done
		done
	fi
	log "PASS bench ($(since $t))"
fi

# ---- profile: system calls per request (only when asked: XENRIG_PHASES=profile) --
# One bench guest per datapath (in place, copied under a layer, grant copy)
# with strace -c on its tapdisk, and the tapdisk's CPU time and context
# switches from /proc. strace slows every call it counts: the counts are
# the point, not the speed.
procstat() { # PID: utime stime (ticks) voluntary nonvoluntary (switches)
	awk '{printf "%s %s ", $14, $15}' /proc/$1/stat 2>/dev/null
	awk '/^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{n=$2} END{printf "%s %s\n", v, n}' \
		/proc/$1/status 2>/dev/null
}
case " $PHASES " in *" profile "*)
	t=$(up)
	[ -x /usr/bin/strace ] || die "no strace in dom0 (install strace on the host that builds the rig)"
	dd if=/dev/zero of=/srv/raw.img bs=1M count=256 2>/dev/null
	for v in inplace:aio: copied:qos:aio: gcopy:aio:; do
		label=${v%%:*}
		spec=${v#*:}/srv/raw.img
		extra=""
		[ "$label" = gcopy ] && extra=xenrig.nopersistent
		EXTRA="xenrig.secs=${SECS:-5} xenrig.label=profile-$label-r1 $extra" guest rigu bench \
			"$(ours xvdb "$spec")"
		# the tapdisk serving it (tap-ctl list: pid first; not its socket reaper)
		pid=$(tap-ctl list | awk '/raw.img/ {print $1; exit}')
		[ -n "$pid" ] && [ -d "/proc/$pid" ] || die "no tapdisk for the profile guest: $(tap-ctl list)"
		s0=$(procstat "$pid")
		strace -c -f -p "$pid" -o /tmp/strace.$label 2>/tmp/strace.err &
		spid=$!
		expect rigu "IOBENCH " 300
		expect rigu "domU: done" 600
		s1=$(procstat "$pid")
		kill -INT $spid 2>/dev/null
		wait $spid 2>/dev/null
		gone rigu
		ops=$(guestlog rigu | sed -n 's/.*IOBENCH .* ops=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
		echo "$s0 $s1 $ops" | awk -v l="$label" '{printf "XENRIG-PROFILE %s: %d requests; tapdisk user %d system %d ticks, %d voluntary + %d involuntary context switches\n", l, $9, $5-$1, $6-$2, $7-$3, $8-$4}'
		echo "XENRIG-PROFILE $label: strace -c -f (calls per request = calls / $ops)"
		sed "s/^/XENRIG-PROFILE $label: /" /tmp/strace.$label /tmp/strace.err
		guestlog rigu | grep "IOBENCH" | sed "s/.*IOBENCH/XENRIG-PROFILE $label: IOBENCH/"
	done
	log "PASS profile ($(since $t))"
	;;
esac

echo "--- tapback log"
cat /var/log/xen/tapback.log
echo "--- warnings of the tapdisk log"
grep -a "warn" /run/tapdisk/tapdisk.log | tail -n 30
echo "--- blkif lines of the tapdisk log"
grep -a "blkif" /run/tapdisk/tapdisk.log | tail -n 30
# a tapdisk that crashed (e.g. at a guest's disconnect) fails the run even
# when the guest saw nothing wrong
if dmesg | grep -a "tapdisk\|tapback" | grep -q "segfault\|general protection\|trap "; then
	die "a tapdisk or tapback crashed (dmesg above)"
fi
# the same with a sanitizer build (BUILD=build-san): its report is in the log
if grep -a -A30 "ERROR: AddressSanitizer\|runtime error:" /run/tapdisk/tapdisk.log /var/log/xen/tapback.log 2>/dev/null; then
	die "a sanitizer report in the tapdisk or tapback log (above)"
fi
log "all phases passed in $(since $T0) of dom0 time"
echo "XENRIG-RES""ULT=PASS uptime=$(up)"
