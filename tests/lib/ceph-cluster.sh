# A real single-node Ceph cluster on 127.0.0.1 for the rbd tests and bench
# (bash; source it, then call ceph_cluster_start DIR).
#
#   ceph_cluster_available      0 when ceph-mon/-mgr/-osd, rados, rbd exist
#   ceph_cluster_start DIR      mon (a free port), mgr, one memstore OSD,
#                               pool 'rbd'; exports CEPH_CONF; waits until
#                               every PG is active+clean (about 30 s)
#   ceph_cluster_stop           kills every daemon it started (idempotent)
#   ceph_wait_clean [SECONDS]   until every PG is active+clean again
#   ceph_mon_stop / ceph_mon_start   the monitor alone (outage tests);
#                               CEPH_OSD_PID is the OSD (SIGSTOP freezes it)
#
# Authentication is off (auth ... required = none): the cluster listens on
# 127.0.0.1 only and lives for one test. The OSD is a memstore of
# CEPH_OSD_BYTES (default 4 GiB) -- a full OSD blocks writes forever, so
# it is sized well above what the tests write. Daemons log to DIR/log.
# The caller must arrange for ceph_cluster_stop to run at exit (the tests
# do it through td_on_exit; bench/rbd.sh through its trap).

CEPH_DIR=""
_ceph_pids=""
CEPH_OSD_PID=""
CEPH_MON_PID=""

ceph_cluster_available() {
	local t
	for t in ceph-mon ceph-mgr ceph-osd monmaptool ceph rados rbd uuidgen; do
		command -v "$t" >/dev/null 2>&1 || return 1
	done
	return 0
}

_ceph_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_ceph_log() { echo "ceph-cluster: $*" >&2; }

ceph_cluster_start() {
	local dir=$1 fsid osd_uuid osd_id i
	CEPH_DIR=$dir
	mkdir -p "$dir"/{mon,mgr,osd,run,log}
	fsid=$(uuidgen)
	CEPH_MON_PORT=$(_ceph_free_port)
	CEPH_MON_ADDR="127.0.0.1:$CEPH_MON_PORT"
	export CEPH_CONF=$dir/ceph.conf
	cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:$CEPH_MON_ADDR
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
ms bind msgr1 = false
ms bind ipv4 = true
ms bind ipv6 = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$id
mgr data = $dir/mgr/\$id
osd data = $dir/osd/\$id
osd objectstore = memstore
memstore device bytes = ${CEPH_OSD_BYTES:-4294967296}
osd max object size = 134217728
mon osd full ratio = 0.97
mon osd backfillfull ratio = 0.95
mon osd nearfull ratio = 0.93
osd op num shards = 2
osd op num threads per shard = 2
mgr initial modules =
mon data avail warn = 1
mon data avail crit = 0
rbd default features = 61
EOF
	monmaptool --create --fsid "$fsid" --addv a "[v2:$CEPH_MON_ADDR]" "$dir/monmap" >/dev/null ||
		{ _ceph_log "monmaptool failed"; return 1; }
	ceph-mon --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mkfs.log" 2>&1 ||
		{ _ceph_log "ceph-mon --mkfs failed: $(tail -3 "$dir/log/mkfs.log")"; return 1; }
	ceph_mon_start || return 1
	ceph-mgr -i x -f >>"$dir/log/mgr.out" 2>&1 &
	_ceph_pids="$_ceph_pids $!"
	osd_uuid=$(uuidgen)
	osd_id=$(timeout 60 ceph osd new "$osd_uuid" 2>>"$dir/log/cli.log") ||
		{ _ceph_log "ceph osd new failed: $(tail -3 "$dir/log/cli.log")"; return 1; }
	mkdir -p "$dir/osd/$osd_id"
	ceph-osd -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/mkfs.log" 2>&1 ||
		{ _ceph_log "ceph-osd --mkfs failed: $(tail -3 "$dir/log/mkfs.log")"; return 1; }
	ceph-osd -i "$osd_id" -f >>"$dir/log/osd.out" 2>&1 &
	CEPH_OSD_PID=$!
	_ceph_pids="$_ceph_pids $CEPH_OSD_PID"
	timeout 60 ceph osd pool create rbd 8 8 >>"$dir/log/cli.log" 2>&1 ||
		{ _ceph_log "pool create failed: $(tail -3 "$dir/log/cli.log")"; return 1; }
	timeout 60 rbd pool init rbd >>"$dir/log/cli.log" 2>&1 ||
		{ _ceph_log "rbd pool init failed: $(tail -3 "$dir/log/cli.log")"; return 1; }
	ceph_wait_clean 120 || return 1
	_ceph_log "cluster up: mon $CEPH_MON_ADDR, $(timeout 10 ceph pg stat 2>/dev/null | cut -d';' -f1)"
}

# ceph_wait_clean [SECONDS] -- until every PG is active+clean (default 120 s)
ceph_wait_clean() {
	local i
	for i in $(seq 1 $((${1:-120} * 2))); do
		# "9 pgs: 9 active+clean; ..." -- every PG (ours and the mgr's)
		timeout 10 ceph pg stat 2>/dev/null |
			awk '$2=="pgs:" && $1==$3 && $4 ~ /^active\+clean;?$/ {ok=1} END {exit !ok}' &&
			return 0
		sleep 0.5
	done
	_ceph_log "PGs did not become active+clean: $(timeout 10 ceph -s 2>&1)"
	return 1
}

ceph_mon_start() {
	ceph-mon -i a -f >>"$CEPH_DIR/log/mon.out" 2>&1 &
	CEPH_MON_PID=$!
	_ceph_pids="$_ceph_pids $CEPH_MON_PID"
	local i
	for i in $(seq 1 100); do
		timeout 5 ceph mon stat >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	_ceph_log "the monitor did not come up: $(tail -5 "$CEPH_DIR/log/mon.a.log" 2>/dev/null)"
	return 1
}

ceph_mon_stop() {
	kill -9 "$CEPH_MON_PID" 2>/dev/null
	wait "$CEPH_MON_PID" 2>/dev/null
	return 0
}

ceph_cluster_stop() {
	local p
	kill -CONT "$CEPH_OSD_PID" 2>/dev/null
	for p in $_ceph_pids; do kill -9 "$p" 2>/dev/null; done
	for p in $_ceph_pids; do wait "$p" 2>/dev/null; done
	_ceph_pids=""
	return 0
}
