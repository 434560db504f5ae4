#!/bin/bash
# How long tap-ctl resize pauses a VBD (the wall time of the command: drain,
# final checkpoint, the grow, reopen), on crypt:aio with integrity (v2):
#   - a sparse 1 TiB image with three 1 MiB writes, grown by 64 GiB;
#   - a fully written image of FULL bytes (default 2G), grown by 1 GiB
#     (its whole tag table is copied).
# Rounds alternate the two; prints each time and the medians.
#   nice -n 15 bench/grow-pause.sh [--rounds N] [--full SIZE] [--dir DIR]
set -eu
rounds=3 full=2G dir=/var/tmp
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--full) full=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	-h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "grow-pause: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$SRC/build/bin:$PATH"
W=$(mktemp -d "$dir/growpause.XXXXXX")
export TAPDISK_RUNDIR=$W/run TDCRYPT_STATE_DIR=$W/state
mkdir -p "$TAPDISK_RUNDIR"
cleanup() {
	for s in "$TAPDISK_RUNDIR"/nbd.*.sock; do [ -S "$s" ] && tap-ctl destroy -s "$s" >/dev/null 2>&1; done
	for i in "$W"/*.img; do [ -f "$i" ] && vdkey unload "aio:$i" >/dev/null 2>&1; done
	rm -rf "$W"
}
trap cleanup EXIT
printf 'grow pause bench' >"$W/key"

prepare() { # IMG SIZE
	truncate -s "$2" "$1"
	vdkey format "aio:$1" --key-file "$W/key" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null
	vdkey load "aio:$1" --key-file "$W/key" >/dev/null
}

timed_resize() { # SOCK SIZE -> seconds
	local t0 t1
	t0=$(date +%s.%N)
	tap-ctl resize -s "$1" "$2"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc
}

sparse=() fullt=()
for r in $(seq 1 "$rounds"); do
	prepare "$W/sparse.img" 1T
	uri=$(tap-ctl create -a "crypt:aio:$W/sparse.img")
	sock=${uri#nbd+unix:///?socket=}
	s0=$(nbdinfo --size "$uri")
	for off in 0 500G $((s0 - 1048576)); do qemu-io -f raw -c "write $off 1M" "$uri" >/dev/null; done
	t=$(timed_resize "$sock" $((s0 + (64 << 30))))
	sparse+=("$t")
	tap-ctl destroy -s "$sock" >/dev/null
	vdkey unload "aio:$W/sparse.img" >/dev/null
	rm -f "$W/sparse.img"

	prepare "$W/full.img" "$full"
	uri=$(tap-ctl create -a "crypt:aio:$W/full.img")
	sock=${uri#nbd+unix:///?socket=}
	s0=$(nbdinfo --size "$uri")
	head -c "$s0" /dev/zero | tr '\0' 'x' | nbdcopy --flush - "$uri"
	t=$(timed_resize "$sock" $((s0 + (1 << 30))))
	fullt+=("$t")
	tap-ctl destroy -s "$sock" >/dev/null
	vdkey unload "aio:$W/full.img" >/dev/null
	rm -f "$W/full.img"
	echo "round $r: sparse 1 TiB ${sparse[-1]} s, fully written $full ${fullt[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo "median: sparse 1 TiB (+64 GiB) $(median "${sparse[@]}") s; fully written $full (+1 GiB) $(median "${fullt[@]}") s"
