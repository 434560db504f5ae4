# Shared helpers for integration tests (bash). Source it first:
#   . "$TD_SRC/tests/lib/common.sh"
# Each test gets its own temp dir and run dir, removed on exit along with
# every process it started through td_bg.
set -u
TD_SRC=${TD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-build}
TD_BIN=${TD_BIN:-$TD_SRC/$BUILD/bin}
TD_TOOLS=${TD_TOOLS:-$TD_SRC/$BUILD/tests/tools}
TD_TESTBIN=${TD_TESTBIN:-$TD_SRC/$BUILD/tests/bin}
export PATH="$TD_BIN:$PATH"

# use_test_build -- from here on tapdisk, tap-ctl and vdkey are the test
# build's (build/tests/bin): the same programs with the test drivers of
# tests/drivers (fault injection, I/O recording), which production programs
# do not contain
use_test_build() {
	export PATH="$TD_TESTBIN:$PATH"
	export TAPDISK_BIN="$TD_TESTBIN/tapdisk"
}

T=$(mktemp -d /var/tmp/tdtest.XXXXXX)
export TAPDISK_RUNDIR="$T/run"
# the trusted generations of this test's images (keymgr/statedir.h)
export TDCRYPT_STATE_DIR="$T/state"
mkdir -p "$TAPDISK_RUNDIR"
_td_pids=""
_td_cleanups=()

td_cleanup() {
	local rc=$?
	for c in "${_td_cleanups[@]+"${_td_cleanups[@]}"}"; do eval "$c" || true; done
	for p in $_td_pids; do kill "$p" 2>/dev/null; done
	# tapdisks started by tap-ctl in our run dir
	for s in "$TAPDISK_RUNDIR"/tapdisk.*.ctl; do
		[ -S "$s" ] || continue
		pid=$(tap-ctl list --json 2>/dev/null | python3 -c 'import json,sys
for e in json.load(sys.stdin): print(e["pid"])' 2>/dev/null)
		for p in $pid; do kill "$p" 2>/dev/null; done
		break
	done
	sleep 0.2
	for p in $_td_pids; do kill -9 "$p" 2>/dev/null; done
	if [ $rc -ne 0 ] && [ -f "$TAPDISK_RUNDIR/tapdisk.log" ]; then
		echo "--- tapdisk.log (last 30 lines)"; tail -n 30 "$TAPDISK_RUNDIR/tapdisk.log"
	fi
	rm -rf "$T"
	exit $rc
}
trap td_cleanup EXIT

td_on_exit() { _td_cleanups+=("$1"); }

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
info() { echo "== $*"; }

need() {
	for t in "$@"; do command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"; done
}

# crypt_image LOWER KEYFILE [vdkey format options...] -- formats LOWER (e.g.
# aio:/path) with a fast PBKDF, loads its key and unloads it at exit
crypt_image() {
	local lower=$1 key=$2
	shift 2
	vdkey format "$lower" --key-file "$key" --pbkdf pbkdf2 --pbkdf-iterations 1000 "$@" \
		>/dev/null || fail "vdkey format $lower"
	td_on_exit "vdkey unload $lower >/dev/null 2>&1"
	vdkey load "$lower" --key-file "$key" >/dev/null || fail "vdkey load $lower"
}

# crypt_aio_disk SIZE LABEL [vdkey format options]: a fresh raw file of
# SIZE, encrypted (crypt_image) with a passphrase made of LABEL; sets IMG,
# KEY, SOCK (where to serve it) and URI (its NBD URI).
crypt_aio_disk() {
	local size=$1 label=$2
	shift 2
	IMG=$T/disk.img
	KEY=$T/pass
	SOCK=$T/nbd.sock
	URI=$(uri_of "$SOCK")
	truncate -s "$size" "$IMG"
	printf '%s %s' "$label" "$RANDOM" >"$KEY"
	crypt_image "aio:$IMG" "$KEY" "$@"
}

# wait_for_socket PATH [SECONDS]
wait_for_socket() {
	local i
	for i in $(seq 1 $((${2:-10} * 20))); do
		[ -S "$1" ] && return 0
		sleep 0.05
	done
	fail "socket $1 did not appear"
}

# td_serve SPEC SOCKET [extra args] -- starts tapdisk serve in the background;
# sets TD_PID.
td_serve() {
	local spec=$1 sock=$2; shift 2
	tapdisk serve "$spec" --socket "$sock" "$@" 2>>"$TAPDISK_RUNDIR/tapdisk.log" &
	TD_PID=$!
	_td_pids="$_td_pids $TD_PID"
	wait_for_socket "$sock" 10
}

# td_stop PID -- SIGTERM and wait; returns its exit status
td_stop() {
	kill -TERM "$1"
	wait "$1"
}

uri_of() { echo "nbd+unix:///?socket=$1"; }

# stat_of SELECTOR_ARGS KEY
stat_of() {
	local key=${!#}
	tap-ctl stats "${@:1:$#-1}" | awk -v k="$key" '$1==k {print $2}'
}

# key_desc LOWER -- the kernel-keyring description of LOWER's key (bound to
# the image file: keymgr/keyring.h)
key_desc() {
	vdkey list "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keyring_description"])'
}
