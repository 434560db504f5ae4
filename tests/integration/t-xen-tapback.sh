#!/bin/bash
# Xen xenstore flow, without a hypervisor: tapback (the real libxenstore
# client) against xsd_standin, a TEST STAND-IN xenstore server on a Unix
# socket. The "toolstack" writes a VBD's backend nodes -> a tapdisk serves
# it, the nodes are filled in, a real NBD client reads and writes through the
# advertised socket; frontend Closing/Closed and node removal stop the
# tapdisk and the qcow2 image passes qemu-img check. Missing key, missing
# image, bad params and malformed nodes -> hotplug-error, nothing hangs, and
# the daemon keeps serving the next good VBD.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io qemu-img nbdinfo keyctl python3 pkg-config
pkg-config --exists xenstore || skip "libxenstore (libxen-dev) is not installed"
XEN=$TD_SRC/$BUILD/xen
XSD=$TD_SRC/$BUILD/tests/xen/xsd_standin # a test stand-in: tests/xen
if [ ! -x "$XEN/tapback" ] || [ "$TD_SRC/xen/tapback.c" -nt "$XEN/tapback" ] ||
	[ ! -x "$XSD" ] || [ "$TD_SRC/tests/xen/xsd_standin.c" -nt "$XSD" ]; then
	"$TD_SRC/xen/build.sh" "$XEN" || fail "building xen/ programs"
fi
export XENSTORED_PATH=$T/xs.sock
XS() { "$XEN/xs_cli" "$@"; }
BE=backend/vbd
FE=/local/domain/1/device/vbd

info "starting xsd_standin (TEST STAND-IN for xenstored, no hypervisor) on $XENSTORED_PATH"
"$XSD" "$XENSTORED_PATH" 2>"$T/xsd.log" &
_td_pids="$_td_pids $!"
# the socket file appears at bind(), before listen(): wait for the log line
# that follows listen(), or tapback may get ECONNREFUSED in between
for i in $(seq 50); do grep -q listening "$T/xsd.log" && break; sleep 0.1; done
grep -q listening "$T/xsd.log" || fail "xsd_standin did not start"
"$XEN/tapback" --xenstored-path "$XENSTORED_PATH" --timeout 10 2>"$T/tapback.log" &
TB_PID=$!
_td_pids="$_td_pids $TB_PID"
td_on_exit '[ -f "$T/tapback.log" ] && [ "$_ok" != 1 ] && { echo "--- tapback.log"; cat "$T/tapback.log"; echo "--- xsd.log"; tail -20 "$T/xsd.log"; }'
_ok=0
for i in $(seq 50); do grep -q watching "$T/tapback.log" && break; sleep 0.1; done
grep -q watching "$T/tapback.log" || fail "tapback did not start"

# toolstack_add DOMID DEVID PARAMS [MODE] -- like libxl: one transaction
toolstack_add() {
	XS write "$FE/$2/state" 1 "$FE/$2/backend-id" 0 || fail "frontend write"
	XS write "$BE/$1/$2/params" "$3" "$BE/$1/$2/mode" "${4:-w}" \
		"$BE/$1/$2/frontend" "/local/domain/$1/device/vbd/$2" "$BE/$1/$2/state" 1 ||
		fail "backend write"
}
# expect_error DOMID DEVID PATTERN
expect_error() {
	XS wait "$BE/$1/$2/hotplug-status" error 20 >/dev/null ||
		fail "$1/$2: hotplug-status is not error"
	err=$(XS read "$BE/$1/$2/hotplug-error")
	echo "   hotplug-error: $err"
	echo "$err" | grep -q "$3" || fail "$1/$2: hotplug-error '$err' does not match '$3'"
	kill -0 $TB_PID || fail "tapback died"
}
ntapdisks() { tap-ctl list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

LOWER=qcow2
tapdisk drivers | grep -q '^qcow2 ' || LOWER=aio
IMG=$T/disk.$LOWER
KEY=$T/pass
if [ $LOWER = qcow2 ]; then
	qemu-img create -q -f qcow2 "$IMG" 64M || fail "qemu-img create"
else
	truncate -s 64M "$IMG"
fi
printf 'xen tapback test %s' "$RANDOM$RANDOM" >"$KEY"
vdkey format "$LOWER:$IMG" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
	fail "vdkey format"
td_on_exit "vdkey unload $LOWER:$IMG >/dev/null 2>&1"
vdkey unload "$LOWER:$IMG" >/dev/null 2>&1

info "missing key: hotplug-error, not a hang"
toolstack_add 1 51728 "tap:crypt:$LOWER:$IMG"
expect_error 1 51728 "no key loaded"
[ "$(ntapdisks)" = 0 ] || fail "a tapdisk is running after a failed start"

info "missing image, bad params, bad mode, malformed nodes"
toolstack_add 1 51744 "tap:aio:$T/no-such-image.img"
expect_error 1 51744 "does not exist"
toolstack_add 1 51760 "tap:$T/disk.img"
expect_error 1 51760 "names no driver"
toolstack_add 1 51776 "tap:nosuchdriver:$IMG"
expect_error 1 51776 "driver"
toolstack_add 1 51792 "tap:aio:$IMG" "rwx"
expect_error 1 51792 "mode 'rwx'"
XS write "$BE/1/51808/mode" w "$BE/1/51808/state" 1 || fail "write"
expect_error 1 51808 "no params"
toolstack_add 1 99999999999 "tap:aio:$IMG"
expect_error 1 99999999999 "devid"
toolstack_add notadomain 51712 "tap:aio:$IMG"
expect_error notadomain 51712 "domid"
[ "$(ntapdisks)" = 0 ] || fail "a tapdisk is running after failed starts"

info "good VBD: tap:crypt:$LOWER:IMG"
vdkey load "crypt:$LOWER:$IMG" --key-file "$KEY" >/dev/null || fail "vdkey load"
toolstack_add 1 51712 "tap:crypt:$LOWER:$IMG"
XS wait "$BE/1/51712/hotplug-status" connected 30 >/dev/null ||
	fail "hotplug-status: $(XS read $BE/1/51712/hotplug-status) $(XS read $BE/1/51712/hotplug-error 2>&1)"
XS wait "$BE/1/51712/state" 2 5 >/dev/null || fail "backend state is not InitWait"
SOCK=$(XS read "$BE/1/51712/nbd-socket") || fail "no nbd-socket"
URI=$(XS read "$BE/1/51712/nbd-uri") || fail "no nbd-uri"
[ "$URI" = "$(uri_of "$SOCK")" ] || fail "nbd-uri $URI does not match nbd-socket $SOCK"
[ -S "$SOCK" ] || fail "$SOCK is not a socket"
for kv in sector-size=512 physical-sector-size=4096 info=0 feature-flush-cache=1 feature-discard=1; do
	[ "$(XS read "$BE/1/51712/${kv%%=*}")" = "${kv#*=}" ] || fail "${kv%%=*} is not ${kv#*=}"
done
SIZE=$(nbdinfo --size "$URI") || fail "nbdinfo"
[ "$(XS read "$BE/1/51712/sectors")" = $((SIZE / 512)) ] ||
	fail "sectors $(XS read "$BE/1/51712/sectors") but the export has $SIZE bytes"
echo "   nbd-socket $SOCK, sectors $((SIZE / 512))"

info "frontend Initialised -> backend Connected; a real NBD client writes and reads"
XS write "$FE/51712/state" 3 || fail "write"
XS wait "$BE/1/51712/state" 4 10 >/dev/null || fail "backend did not reach Connected"
qemu-io -f raw -c "write -P 0x5a 0 1M" -c "write -P 0xa5 3M 64k" -c "flush" "$URI" >"$T/qio.out" ||
	fail "qemu-io write"
qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0xa5 3M 64k" -c "read -P 0 4M 64k" "$URI" \
	>"$T/qio.out" || fail "qemu-io read"
grep -qi "fail\|error" "$T/qio.out" && fail "pattern: $(cat "$T/qio.out")"
XS write "$FE/51712/state" 4 || fail "write"
sleep 0.2
[ "$(XS read "$BE/1/51712/state")" = 4 ] || fail "backend left Connected"

info "a second, read-only VBD on the same daemon"
RAW=$T/ro.img
truncate -s 8M "$RAW"
toolstack_add 2 51712 "aio:$RAW" r
XS wait "$BE/2/51712/hotplug-status" connected 30 >/dev/null || fail "ro VBD not connected"
[ "$(XS read "$BE/2/51712/info")" = 4 ] || fail "info is not VDISK_READONLY"
[ "$(XS read "$BE/2/51712/sectors")" = $((8 << 11)) ] || fail "ro sectors"
ROURI=$(XS read "$BE/2/51712/nbd-uri")
qemu-io -f raw -c "write -P 1 0 4k" "$ROURI" 2>&1 | grep -qi "fail\|error\|denied\|read-only" ||
	fail "write to a read-only VBD did not fail"
[ "$(ntapdisks)" = 2 ] || fail "expected 2 tapdisks, have $(ntapdisks)"

info "frontend Closing/Closed -> backend Closing/Closed; removal stops the tapdisk"
XS write "$FE/51712/state" 5 || fail "write"
XS wait "$BE/1/51712/state" 5 10 >/dev/null || fail "backend did not follow to Closing"
XS write "$FE/51712/state" 6 || fail "write"
XS wait "$BE/1/51712/state" 6 10 >/dev/null || fail "backend did not follow to Closed"
TDPID=$(tap-ctl list --json | python3 -c 'import json,sys
for e in json.load(sys.stdin):
    if e["socket"] == sys.argv[1]: print(e["pid"])' "$SOCK")
[ -n "$TDPID" ] || fail "no tapdisk on $SOCK"
XS rm "$BE/1/51712" || fail "rm"
for i in $(seq 100); do kill -0 "$TDPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$TDPID" 2>/dev/null && fail "tapdisk $TDPID still running after node removal"
[ "$(ntapdisks)" = 1 ] || fail "expected 1 tapdisk left, have $(ntapdisks)"
if [ $LOWER = qcow2 ]; then
	qemu-img check -q "$IMG" || fail "qemu-img check"
	echo "   qemu-img check: clean"
fi

info "removing a whole domain's backend directory stops its tapdisks"
XS rm "$BE/2" || fail "rm"
for i in $(seq 100); do [ "$(ntapdisks)" = 0 ] && break; sleep 0.1; done
[ "$(ntapdisks)" = 0 ] || fail "tapdisks left: $(tap-ctl list)"

info "the data survives: a new VBD on the same image reads it back"
toolstack_add 3 768 "crypt:$LOWER:$IMG"
XS wait "$BE/3/768/hotplug-status" connected 30 >/dev/null || fail "re-attach"
URI=$(XS read "$BE/3/768/nbd-uri")
qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0xa5 3M 64k" "$URI" >"$T/qio.out" ||
	fail "qemu-io read back"
grep -qi "fail\|error" "$T/qio.out" && fail "pattern after re-attach"
XS rm "$BE/3/768" || fail "rm"
for i in $(seq 100); do [ "$(ntapdisks)" = 0 ] && break; sleep 0.1; done
[ "$(ntapdisks)" = 0 ] || fail "tapdisk left after removal"
[ $LOWER = qcow2 ] && { qemu-img check -q "$IMG" || fail "qemu-img check (2)"; }
grep -qi "unsupported message" "$T/xsd.log" && fail "libxenstore sent a message the stand-in does not know"

info "SIGTERM: tapback exits 0"
kill -TERM $TB_PID
wait $TB_PID || fail "tapback exit status $?"
_ok=1
echo ok
