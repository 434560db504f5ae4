#!/bin/bash
# test: long — started first, so the parallel run does not end waiting for it
# The rbd driver on a real single-node Ceph cluster (tests/lib/ceph-cluster.sh:
# ceph-mon, ceph-mgr, one memstore ceph-osd on 127.0.0.1), one cluster start
# shared by every section to keep CI time down:
#   roundtrip  rbd: and crypt:rbd: through qemu-io, nbdcopy, fio verify; a
#              tapdisk on another "host" (own process and run dir) reads the
#              same data; no plaintext in the RADOS objects
#   tamper     a byte flipped in the RADOS object holding a written block
#              (rados get/put) -> that block reads EIO, its neighbour is fine
#   lock       a second tapdisk (another host) is refused while the first
#              runs, and the first keeps its lock; migration handover between
#              the two under a running fio verify workload (through an NBD
#              frontend that re-issues unanswered requests, like a migrating
#              VM): no client error, no lost write
#   snapshot   tap-ctl snapshot under fio load; the RBD snapshot opens
#              read-only as crypt:rbd:POOL/IMG@SNAP with the same key, reads
#              the data of the snapshot point, every MAC verifies
#   outage     monitor killed and restarted under fio verify: no error, I/O
#              resumes; OSD frozen: requests fail with EIO within the
#              timeout= bound, I/O resumes when it thaws, nothing
#              acknowledged is lost; unreachable cluster at open: a clear
#              error naming the monitor address
# RBD_SECTIONS="roundtrip tamper ..." runs a subset.
. "$TD_SRC/tests/lib/common.sh"
. "$TD_SRC/tests/lib/ceph-cluster.sh"
need qemu-io nbdcopy nbdinfo fio keyctl python3
ceph_cluster_available ||
	skip "the Ceph packages (ceph-mon ceph-mgr ceph-osd ceph-common uuid-runtime) are not installed"
tapdisk drivers | grep -q '^rbd ' || fail "tapdisk has no rbd driver"
SECTIONS=${RBD_SECTIONS:-roundtrip tamper lock snapshot outage}

HOSTA=$T/hostA
HOSTB=$T/hostB
mkdir -p "$HOSTA" "$HOSTB"
export TDCRYPT_STATE_DIR=$T/state
KEY=$T/pass
printf 'rbd test passphrase %s' "$RANDOM$RANDOM" >"$KEY"

# tapdisks first (their close talks to the cluster), then the cluster
kill_tapdisks() {
	local d p pids=""
	for d in "$TAPDISK_RUNDIR" "$HOSTA" "$HOSTB"; do
		pids="$pids $(TAPDISK_RUNDIR=$d tap-ctl list --json 2>/dev/null | python3 -c 'import json,sys
for e in json.load(sys.stdin): print(e["pid"])' 2>/dev/null)"
	done
	for p in $pids $_td_pids; do kill -TERM "$p" 2>/dev/null; done
	sleep 1
	for p in $pids $_td_pids; do kill -9 "$p" 2>/dev/null; done
	return 0
}
KEYED=""
unload_keys() { # needs the cluster (vdkey reads the header's UUID)
	local i
	for i in $KEYED; do timeout 20 vdkey unload "rbd:rbd/$i" >/dev/null 2>&1; done
	return 0
}
td_on_exit "kill_tapdisks"
td_on_exit "unload_keys"
td_on_exit "ceph_cluster_stop"
td_on_exit '[ -n "${PROXY:-}" ] && kill $PROXY 2>/dev/null'

info "starting a single-node Ceph cluster"
t0=$SECONDS
ceph_cluster_start "$T/ceph" || fail "cannot start the test cluster (logs: $T/ceph/log)"
echo "cluster healthy after $((SECONDS - t0)) s (mon $CEPH_MON_ADDR)"

# on "host" A or B: own run dir, so own minor numbers, sockets and log
onA() { TAPDISK_RUNDIR=$HOSTA "$@"; }
onB() { TAPDISK_RUNDIR=$HOSTB "$@"; }
sock_of() { echo "${1#nbd+unix:///?socket=}"; }

# new_crypt_image NAME SIZE: create, format, load the key
new_crypt_image() {
	rbd create --size "$2" "rbd/$1" || fail "rbd create $1"
	vdkey format "rbd:rbd/$1" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
		fail "vdkey format rbd:rbd/$1"
	vdkey load "rbd:rbd/$1" --key-file "$KEY" >/dev/null || fail "vdkey load rbd:rbd/$1"
	KEYED="$KEYED $1"
}

fio_verify() { # URI SIZE EXTRA... -- random writes, each verified (crc32c)
	local uri=$1 size=$2; shift 2
	fio --name=v --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 --size="$size" \
		--verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --randrepeat=1 "$@"
}

check_patterns() { # URI OPT "off len pat"...
	local uri=$1 opt=$2 out; shift 2
	for spec in "$@"; do
		set -- $spec
		out=$(qemu-io $opt -f raw -c "read -P $3 $1 $2" "$uri" 2>&1)
		echo "$out" | grep -Eq "^read ([0-9]+)/\1 bytes" || fail "read $spec: $out"
		echo "$out" | grep -qi "fail" && fail "pattern at $spec: $out"
	done
	return 0
}

# offset length pattern, in bytes (4194816+1536 and 70144+1024: 512-byte aligned, not 4k)
PATTERNS=("0 65536 0x11" "1048576 4096 0x22" "4194816 1536 0x33" "104857600 1048576 0x44" "70144 1024 0x66")

sec_roundtrip() {
	info "roundtrip: rbd: raw image through qemu-io, nbdcopy, fio"
	rbd create --size 192M rbd/raw1 || fail "rbd create"
	local sock=$T/raw.sock uri out
	td_serve "rbd:rbd/raw1" "$sock"
	uri=$(uri_of "$sock")
	case "$BUILD" in
	*san*) ;; # sanitizer builds install no seccomp filter
	*)
		# the tapdisk installed a filter, and it is the cluster list (the rbd
		# driver needs the network): network yes (librados), new processes no,
		# as tests/tools/sandbox_probe shows with the very same sandbox code
		# (the socket exists before the filter is installed, a moment later)
		for _ in $(seq 100); do grep -q "^Seccomp:.*2" "/proc/$TD_PID/status" && break; sleep 0.1; done
		grep -q "^Seccomp:.*2" "/proc/$TD_PID/status" || fail "no seccomp filter"
		out=$("$TD_TOOLS/sandbox_probe" --profile cluster socket-inet fork)
		echo "$out" | grep -q "socket-inet.*: ok" || fail "rbd tapdisk cannot open sockets: $out"
		echo "$out" | grep -q "fork.*: Operation not permitted" || fail "rbd tapdisk could fork: $out"
		;;
	esac
	[ "$(nbdinfo --size "$uri")" = $((192 << 20)) ] || fail "nbdinfo size"
	for spec in "${PATTERNS[@]}" "201322496 4k 0x55"; do
		set -- $spec
		qemu-io -f raw -c "write -P $3 $1 $2" "$uri" >/dev/null || fail "write $spec"
	done
	check_patterns "$uri" "" "${PATTERNS[@]}" "201322496 4k 0x55"
	qemu-io -f raw -c "read -P 0 4194304 512" -c "read -P 0 4196352 2048" "$uri" 2>&1 |
		grep -qi "verification failed" && fail "unaligned write touched its neighbours"
	head -c 48M /dev/urandom >"$T/src.raw"
	nbdcopy "$T/src.raw" "$uri" || fail "nbdcopy to rbd:"
	fio_verify "$uri" 32M --offset=64M --output="$T/fio-raw.txt" ||
		{ cat "$T/fio-raw.txt"; fail "fio verify on rbd:"; }
	grep -q "err= 0" "$T/fio-raw.txt" || fail "fio errors on rbd:"
	nbdcopy "$uri" "$T/back.raw" || fail "nbdcopy from rbd:"
	cmp <(head -c 48M "$T/back.raw") "$T/src.raw" || fail "nbdcopy round trip differs"
	td_stop "$TD_PID" || fail "tapdisk exit status"
	rbd export rbd/raw1 - 2>/dev/null | cmp -n $((48 << 20)) - "$T/src.raw" ||
		fail "the RBD image does not hold what was written"

	info "roundtrip: another host (its own tapdisk and run dir) reads the same data"
	uri=$(onB tap-ctl create -a rbd:rbd/raw1) || fail "create on host B"
	nbdcopy "$uri" "$T/backB.raw" || fail "nbdcopy on host B"
	cmp "$T/back.raw" "$T/backB.raw" || fail "host B reads different data"
	check_patterns "$uri" "" "100M 1M 0x44" "201322496 4k 0x55"
	onB tap-ctl destroy -s "$(sock_of "$uri")" || fail "destroy on B"

	info "roundtrip: crypt:rbd: (XTS + HMAC integrity inside the RBD image)"
	new_crypt_image enc1 160M
	uri=$(onA tap-ctl create -a crypt:rbd:rbd/enc1) || fail "create crypt:rbd"
	local dsize
	dsize=$(vdkey list rbd:rbd/enc1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_size"])')
	[ "$(nbdinfo --size "$uri")" = "$dsize" ] || fail "crypt:rbd size"
	# the MAC journal on rbd grows with the image: 1/64 of it within 4..32 MiB
	vdkey list rbd:rbd/enc1 --json | grep -q '"journal_blocks": 1024,' || fail "160M: 4 MiB journal"
	rbd create --size 1G rbd/jbig || fail "rbd create jbig"
	vdkey format rbd:rbd/jbig --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
		fail "format jbig"
	vdkey list rbd:rbd/jbig --json | grep -q '"journal_blocks": 4096,' || fail "1G: 16 MiB journal"
	rbd rm rbd/jbig >/dev/null 2>&1
	MARK="RBDSECRET-MARKER-$RANDOM$RANDOM"
	python3 -c "import sys; m='$MARK'; sys.stdout.write((m * ((32 << 20) // len(m) + 1))[:32 << 20])" \
		>"$T/marked.raw"
	nbdcopy "$T/marked.raw" "$uri" || fail "nbdcopy to crypt:rbd"
	for spec in "${PATTERNS[@]}"; do
		set -- $spec
		qemu-io -f raw -c "write -P $3 $(($1 + (40 << 20))) $2" "$uri" >/dev/null ||
			fail "write $spec"
	done
	fio_verify "$uri" 32M --offset=96M --output="$T/fio-enc.txt" ||
		{ cat "$T/fio-enc.txt"; fail "fio verify on crypt:rbd"; }
	grep -q "err= 0" "$T/fio-enc.txt" || fail "fio errors on crypt:rbd"
	nbdcopy "$uri" "$T/encA.raw" || fail "nbdcopy from crypt:rbd"
	onA tap-ctl destroy -s "$(sock_of "$uri")" || fail "destroy on A"
	rbd export rbd/enc1 "$T/enc1.export" >/dev/null 2>&1 || fail "rbd export"
	grep -q "RBDSECRET" "$T/enc1.export" && fail "plaintext marker found in the RBD image"

	info "roundtrip: crypt:rbd: on another host reads the same plaintext"
	uri=$(onB tap-ctl create -a crypt:rbd:rbd/enc1) || fail "create crypt:rbd on B"
	nbdcopy "$uri" "$T/encB.raw" || fail "nbdcopy on B"
	cmp "$T/encA.raw" "$T/encB.raw" || fail "host B reads different plaintext"
	cmp <(head -c 32M "$T/encB.raw") "$T/marked.raw" || fail "marker data did not round trip"
	onB tap-ctl destroy -s "$(sock_of "$uri")" || fail "destroy on B"
	rm -f "$T"/*.raw "$T/enc1.export"
}

sec_tamper() {
	info "tamper: a flipped byte in the RADOS object of a written block -> EIO"
	new_crypt_image tamp 96M
	local uri blk=5000 doff off objsize prefix obj out
	uri=$(onA tap-ctl create -a crypt:rbd:rbd/tamp) || fail "create"
	qemu-io -f raw -c "write -P 0x5a $((blk * 4096)) 4k" -c "write -P 0x5b $(((blk + 1) * 4096)) 4k" \
		"$uri" >/dev/null || fail "write"
	check_patterns "$uri" "" "$((blk * 4096)) 4k 0x5a"
	onA tap-ctl destroy -s "$(sock_of "$uri")" || fail "destroy"
	doff=$(vdkey list rbd:rbd/tamp --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_offset"])')
	read -r objsize prefix < <(rbd info rbd/tamp --format json |
		python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["object_size"], j["block_name_prefix"])')
	off=$((doff + blk * 4096))
	obj=$(printf '%s.%016x' "$prefix" $((off / objsize)))
	echo "block $blk: image offset $off, object $obj, offset $((off % objsize)) in it"
	rados -p rbd get "$obj" "$T/obj" || fail "rados get $obj"
	python3 - "$T/obj" $((off % objsize + 1234)) <<'PY' || fail "flip"
import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
assert len(b) > o, (len(b), o)
b[o] ^= 0x01
open(p, "wb").write(b)
PY
	rados -p rbd put "$obj" "$T/obj" || fail "rados put $obj"
	uri=$(onA tap-ctl create -a crypt:rbd:rbd/tamp) || fail "create after tamper"
	out=$(qemu-io -f raw -c "read $((blk * 4096)) 4k" "$uri" 2>&1)
	echo "$out" | grep -qi "input/output error" || fail "tampered block did not read EIO: $out"
	check_patterns "$uri" "" "$(((blk + 1) * 4096)) 4k 0x5b" "0 64k 0"
	[ "$(onA stat_of -s "$(sock_of "$uri")" integrity_failures)" -ge 1 ] ||
		fail "integrity_failures not counted"
	onA tap-ctl destroy -s "$(sock_of "$uri")" || fail "destroy"
	info "tamper: a copy of the image (rbd cp) is not opened with the original's loaded key"
	rbd cp rbd/tamp rbd/tampcopy >/dev/null 2>&1 || fail "rbd cp"
	out=$(onA tap-ctl create -a crypt:rbd:rbd/tampcopy 2>&1) && fail "the copy was served: $out"
	echo "$out" | grep -q "belongs to another file" || fail "copy refused with: $out"
}

sec_lock() {
	info "lock: a second tapdisk on another host is refused while the first runs"
	new_crypt_image mig 160M
	local uriA sockA out
	uriA=$(onA tap-ctl create -a crypt:rbd:rbd/mig) || fail "create on A"
	sockA=$(sock_of "$uriA")
	out=$(onB tap-ctl create -a crypt:rbd:rbd/mig 2>&1) && fail "host B opened a locked image"
	echo "$out"
	echo "$out" | grep -q "image rbd/mig is locked by another client" || fail "message: $out"
	out=$(tapdisk serve rbd:rbd/mig --socket "$T/x.sock" 2>&1) && fail "raw open of a locked image"
	echo "$out" | grep -q "image rbd/mig is locked by another client" || fail "message: $out"
	rbd lock ls rbd/mig | grep -q "client\." || fail "no RBD lock shown"
	# the refused opener did not take the lock away: A still writes
	qemu-io -f raw -c "write -P 0x77 130M 64k" "$uriA" >/dev/null || fail "A lost its lock"
	check_patterns "$uriA" "" "136314880 65536 0x77"

	info "lock: migration handover A -> B under a running fio verify workload"
	python3 "$TD_SRC/tests/lib/rbd_nbdproxy.py" "$T/front.sock" "$sockA" \
		"TAPDISK_RUNDIR=$HOSTA tap-ctl pause -s $sockA && TAPDISK_RUNDIR=$HOSTB tap-ctl create -a crypt:rbd:rbd/mig" \
		>"$T/proxy.out" 2>"$T/proxy.err" &
	PROXY=$!
	for i in $(seq 1 50); do [ -S "$T/front.sock" ] && break; sleep 0.1; done
	fio_verify "nbd+unix:///?socket=$T/front.sock" 96M --time_based --runtime=10 \
		--verify_backlog=256 --output="$T/fio-mig.txt" &
	local F=$!
	sleep 4
	kill -USR1 $PROXY
	wait $F || { cat "$T/fio-mig.txt" "$T/proxy.err"; fail "fio reported an error across the handover"; }
	grep -q "err= 0" "$T/fio-mig.txt" || { cat "$T/fio-mig.txt"; fail "fio errors"; }
	cat "$T/proxy.err"
	grep -q "handover done" "$T/proxy.err" || fail "the handover did not happen"
	kill $PROXY; wait $PROXY 2>/dev/null; PROXY=
	onA tap-ctl list | grep -q paused || fail "source not paused"
	local uriB
	uriB=$(onB tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["uri"])')
	onA tap-ctl destroy -s "$sockA" || fail "destroy source"
	# the last verified state, re-read in full by a fresh reader on B
	st=$(onB tap-ctl stats -s "$(sock_of "$uriB")" --json)
	echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["errors"]==0 and s["integrity_failures"]==0 and s["writes"]>0, s' ||
		fail "destination stats: $st"
	check_patterns "$uriB" "" "136314880 65536 0x77"
	nbdcopy "$uriB" /dev/null || fail "full read on B (MACs)"
	onB tap-ctl destroy -s "$(sock_of "$uriB")" || fail "destroy destination"
}

sec_snapshot() {
	info "snapshot: tap-ctl snapshot under fio load"
	new_crypt_image snapimg 160M
	local uri sock suri
	uri=$(onA tap-ctl create -a crypt:rbd:rbd/snapimg) || fail "create"
	sock=$(sock_of "$uri")
	head -c 32M /dev/urandom >"$T/f0.raw"
	head -c 32M /dev/urandom >"$T/f1.raw"
	nbdcopy "$T/f0.raw" "$uri" || fail "nbdcopy f0"
	fio_verify "$uri" 64M --offset=64M --time_based --runtime=8 --verify_backlog=256 \
		--output="$T/fio-snap.txt" &
	local F=$!
	sleep 2
	onA tap-ctl snapshot -s "$sock" snap1 || fail "tap-ctl snapshot"
	rbd snap ls rbd/snapimg | grep -q snap1 || fail "no RBD snapshot"
	out=$(onA tap-ctl snapshot -s "$sock" 'bad/name' 2>&1) && fail "bad snapshot name accepted"
	nbdcopy "$T/f1.raw" "$uri" || fail "nbdcopy f1 after the snapshot"
	wait $F || { cat "$T/fio-snap.txt"; fail "fio error across the snapshot"; }
	grep -q "err= 0" "$T/fio-snap.txt" || fail "fio errors"
	suri=$(onB tap-ctl create -r -a crypt:rbd:rbd/snapimg@snap1) || fail "open the snapshot"
	nbdcopy "$suri" "$T/snap.raw" || fail "reading the whole snapshot (a MAC failed?)"
	cmp <(head -c 32M "$T/snap.raw") "$T/f0.raw" || fail "snapshot does not hold the snapshot point's data"
	out=$(qemu-io -f raw -c "write -P 1 0 4k" "$suri" 2>&1) && fail "snapshot writable: $out"
	st=$(onB tap-ctl stats -s "$(sock_of "$suri")" --json)
	echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["integrity_failures"]==0, s' ||
		fail "snapshot stats: $st"
	nbdcopy "$uri" "$T/live.raw" || fail "read live"
	cmp <(head -c 32M "$T/live.raw") "$T/f1.raw" || fail "live image lost the post-snapshot write"
	onB tap-ctl destroy -s "$(sock_of "$suri")" || fail "destroy snapshot reader"
	onA tap-ctl destroy -s "$sock" || fail "destroy"
	rm -f "$T"/*.raw
}

sec_outage() {
	info "outage: monitor killed and restarted under fio verify"
	new_crypt_image mk 128M
	local uri sock t1 dt out
	uri=$(onA tap-ctl create -a "crypt:rbd,timeout=8:rbd/mk") || fail "create"
	sock=$(sock_of "$uri")
	fio_verify "$uri" 64M --time_based --runtime=14 --verify_backlog=256 --output="$T/fio-mk.txt" &
	local F=$!
	sleep 3
	ceph_mon_stop
	echo "monitor killed"
	sleep 5
	ceph_mon_start || fail "monitor restart"
	echo "monitor back"
	wait $F || { cat "$T/fio-mk.txt"; fail "fio error across the monitor outage"; }
	grep -q "err= 0" "$T/fio-mk.txt" || fail "fio errors"
	qemu-io -f raw -c "write -P 0x42 100M 64k" "$uri" >/dev/null || fail "write after the outage"
	check_patterns "$uri" "" "100M 64k 0x42"
	onA tap-ctl destroy -s "$sock" || fail "destroy"

	info "outage: OSD frozen -> EIO within the timeout=5 bound; thawed -> I/O resumes"
	# start from a healthy cluster: after the monitor restart above the OSD
	# may still be re-registering (slow under ASan on a loaded machine)
	ceph_wait_clean 120 || fail "the cluster is not healthy after the monitor restart"
	rbd create --size 64M rbd/frz || fail "rbd create"
	uri=$(onA tap-ctl create -a "rbd,timeout=5:rbd/frz") || fail "create"
	sock=$(sock_of "$uri")
	qemu-io -f raw -c "write -P 0x61 0 1M" -c "write -P 0x62 8M 1M" "$uri" >/dev/null || fail "write"
	kill -STOP "$CEPH_OSD_PID"
	t1=$SECONDS
	out=$(timeout 60 qemu-io -f raw -c "write -P 0x63 16M 1M" "$uri" 2>&1) && {
		kill -CONT "$CEPH_OSD_PID"; fail "write succeeded with the OSD frozen: $out"; }
	dt=$((SECONDS - t1))
	echo "frozen OSD: write failed after ${dt}s: $(echo "$out" | head -1)"
	echo "$out" | grep -qi "input/output error" || { kill -CONT "$CEPH_OSD_PID"; fail "not EIO: $out"; }
	[ $dt -le 15 ] || { kill -CONT "$CEPH_OSD_PID"; fail "EIO after ${dt}s, bound is 5 s"; }
	kill -CONT "$CEPH_OSD_PID"
	sleep 1
	# I/O resumes: the OSD may need a while after the thaw (heartbeats,
	# peering), more on a loaded machine; give it up to 60 s
	try_io() {
		local i
		for i in $(seq 1 "$1"); do
			out=$(qemu-io -f raw -c "write -P 0x64 16M 1M" -c "read -P 0x61 0 1M" "$uri" 2>&1)
			echo "$out" >"$T/lastio"
			echo "$out" | grep -qi "fail\|error\|mismatch" || { echo "$((i * 2))"; return 0; }
			sleep 2
		done
		return 1
	}
	if ! secs=$(try_io 30); then
		# Seen now and then (one ASan run in three; by hand, one round in
		# five of monitor restart + OSD freeze): after the thaw some PGs
		# stay "active+clean+laggy" -- their read lease is never renewed on
		# this one-OSD pool -- and the OSD keeps every request to them
		# "waiting for readable". That is the cluster not serving, not our
		# driver: then make the OSD re-peer (mark it down; it re-asserts
		# itself up and the PGs turn active+clean within seconds) and
		# require our I/O to resume after that. Otherwise the stall is ours.
		echo "--- last qemu-io: $(cat "$T/lastio")"
		echo "--- host A tapdisk.log"; tail -10 "$HOSTA/tapdisk.log" 2>&1
		held=$(timeout 20 ceph tell osd.0 dump_ops_in_flight 2>/dev/null |
			python3 -c 'import json,sys; j=json.load(sys.stdin); print(j.get("num_ops", 0)); [print("   ", o["description"][:100], o.get("type_data", {}).get("flag_point")) for o in j.get("ops", [])[:4]]')
		echo "--- requests held by the OSD: ${held:-(no answer)}"
		pgs=$(timeout 10 ceph pg stat 2>&1)
		echo "--- ceph pg stat: $pgs"
		echo "$pgs" | grep -q laggy ||
			fail "I/O did not resume within 60 s of the thaw, and no PG is laggy"
		echo "laggy PGs 60 s after the thaw: re-peering the OSD (ceph osd down 0)"
		timeout 20 ceph osd down 0 || fail "ceph osd down 0"
		secs=$(try_io 30) ||
			fail "I/O did not resume within 60 s of re-peering the OSD (and 60 s of the thaw before)"
		echo "I/O resumed $secs s after the re-peer"
	else
		echo "I/O resumed $secs s after the thaw"
	fi
	check_patterns "$uri" "" "0 1M 0x61" "8M 1M 0x62" "16M 1M 0x64"
	onA tap-ctl destroy -s "$sock" || fail "destroy"
	rbd export rbd/frz - 2>/dev/null | head -c 1M | cmp - <(head -c 1M /dev/zero | tr '\0' '\141') ||
		fail "acknowledged data lost"

	info "outage: unreachable cluster at open names the monitor address"
	local port
	port=$(_ceph_free_port)
	sed "s/^mon host = .*/mon host = v2:127.0.0.1:$port/" "$CEPH_CONF" >"$T/dead.conf"
	t1=$SECONDS
	out=$(tapdisk serve "rbd,conf=$T/dead.conf,open_timeout=3:rbd/frz" --socket "$T/dead.sock" 2>&1) &&
		fail "served with no cluster"
	echo "$out" | tail -1
	echo "$out" | grep -q "127.0.0.1:$port" || fail "the error does not name the monitor: $out"
	[ $((SECONDS - t1)) -le 20 ] || fail "open took $((SECONDS - t1)) s with open_timeout=3"
	out=$(CEPH_CONF=$T/dead.conf tap-ctl create -t 30 -a "rbd,open_timeout=3:rbd/frz" 2>&1) && fail "created"
	echo "$out" | grep -q "127.0.0.1:$port" || fail "tap-ctl message: $out"
}

ran=0
for s in $SECTIONS; do
	t0=$SECONDS
	"sec_$s" || fail "section $s"
	echo "section $s: $((SECONDS - t0)) s"
	ran=$((ran + 1))
done
# a shell error inside a section (not a failed check) ends the loop early
[ "$ran" = "$(echo $SECTIONS | wc -w)" ] || fail "only $ran section(s) of '$SECTIONS' ran"
# tapdisks started by tap-ctl log there; a sanitizer report is a failure
for d in "$TAPDISK_RUNDIR" "$HOSTA" "$HOSTB"; do
	grep -l "Sanitizer\|runtime error:" "$d/tapdisk.log" 2>/dev/null && fail "sanitizer report in $d/tapdisk.log"
done
echo ok
