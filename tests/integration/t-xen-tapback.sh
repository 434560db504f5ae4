#!/bin/bash
# Xen xenstore flow, without a hypervisor: tapback (the real libxenstore
# client) against xsd_standin, a TEST STAND-IN xenstore server on a Unix
# socket. The test plays libxl and the guest: it writes a VBD's backend
# nodes as libxl does (script=block-tdcrypt), runs the real hotplug script
# xen/block-tdcrypt as libxl would, and writes the frontend's nodes as
# blkfront would. Checked: tapback takes only block-tdcrypt VBDs, publishes
# the ring limits and features and reaches InitWait; the script starts the
# tapdisk (errors such as a missing key reach hotplug-error); hostile
# frontend nodes (garbage numbers, a ring order above what we advertise,
# an unknown protocol) are refused into hotplug-error and Closing, and the
# frontend may start again; a well-formed frontend gets `tap-ctl
# xen-connect` — which fails cleanly here, since this host has no Xen (the
# tapdisk runs without --xen: TEST STAND-IN tap-ctl wrapper below) — the
# toolstack's Closing, the script's remove and the removal of the nodes
# stop the tapdisk. The NBD socket stays available to dom0 tools: the data
# written through it survives. The ring itself is tested by test_blkif and,
# on a real Xen, by tests/xen/rig.sh (make check-xen).
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
SCRIPT=$TD_SRC/xen/block-tdcrypt

# TEST STAND-INS on PATH for the hotplug script: xenstore-read/-write over
# xs_cli (when the host has no xenstore-utils), and a tap-ctl that drops
# --xen (this host has no /dev/xen/gntdev, so a --xen tapdisk cannot start)
SHIM=$T/shim
mkdir -p "$SHIM"
printf '#!/bin/sh\nexec "%s" read "$@"\n' "$XEN/xs_cli" >"$SHIM/xenstore-read"
printf '#!/bin/sh\nexec "%s" write "$@"\n' "$XEN/xs_cli" >"$SHIM/xenstore-write"
cat >"$SHIM/tap-ctl" <<EOF
#!/bin/bash
# TEST STAND-IN: tap-ctl without --xen (no Xen on this host)
a=(); for x in "\$@"; do [ "\$x" = --xen ] || a+=("\$x"); done
exec "$TD_BIN/tap-ctl" "\${a[@]}"
EOF
chmod +x "$SHIM"/*
export PATH="$PATH:$SHIM"
export TAPCTL=$SHIM/tap-ctl

info "starting xsd_standin (TEST STAND-IN for xenstored, no hypervisor) on $XENSTORED_PATH"
"$XSD" "$XENSTORED_PATH" 2>"$T/xsd.log" &
_td_pids="$_td_pids $!"
# the socket file appears at bind(), before listen(): wait for the log line
# that follows listen(), or tapback may get ECONNREFUSED in between
for i in $(seq 50); do grep -q listening "$T/xsd.log" && break; sleep 0.1; done
grep -q listening "$T/xsd.log" || fail "xsd_standin did not start"
"$XEN/tapback" --xenstored-path "$XENSTORED_PATH" --tap-ctl "$SHIM/tap-ctl" --timeout 10 \
	2>"$T/tapback.log" &
TB_PID=$!
_td_pids="$_td_pids $TB_PID"
td_on_exit '[ -f "$T/tapback.log" ] && [ "$_ok" != 1 ] && { echo "--- tapback.log"; cat "$T/tapback.log"; echo "--- xsd.log"; tail -20 "$T/xsd.log"; }'
_ok=0
for i in $(seq 50); do grep -q watching "$T/tapback.log" && break; sleep 0.1; done
grep -q watching "$T/tapback.log" || fail "tapback did not start"

# toolstack_add DOMID DEVID PARAMS [MODE] [SCRIPT] -- like libxl: one transaction
toolstack_add() {
	XS write "$FE/$2/state" 1 "$FE/$2/backend-id" 0 || fail "frontend write"
	XS write "$BE/$1/$2/params" "$3" "$BE/$1/$2/mode" "${4:-w}" \
		"$BE/$1/$2/script" "${5-/etc/xen/scripts/block-tdcrypt}" "$BE/$1/$2/type" phy \
		"$BE/$1/$2/frontend" "/local/domain/$1/device/vbd/$2" "$BE/$1/$2/online" 1 \
		"$BE/$1/$2/state" 1 || fail "backend write"
}
# hotplug DOMID DEVID add|remove -- what libxl runs once the backend is in InitWait
hotplug() {
	XENBUS_PATH=$BE/$1/$2 "$SCRIPT" "$3" 2>"$T/script.err"
}
# expect_error DOMID DEVID PATTERN
expect_error() {
	XS wait "$BE/$1/$2/hotplug-status" error 20 >/dev/null ||
		fail "$1/$2: hotplug-status is not error (script: $(cat "$T/script.err" 2>/dev/null))"
	err=$(XS read "$BE/$1/$2/hotplug-error")
	echo "   hotplug-error: $err"
	echo "$err" | grep -q -- "$3" || fail "$1/$2: hotplug-error '$err' does not match '$3'"
	kill -0 $TB_PID || fail "tapback died"
}
# fe_error DOMID DEVID PATTERN -- a frontend refused: hotplug-error, Closing
fe_error() {
	XS wait "$BE/$1/$2/state" 5 10 >/dev/null || fail "$1/$2: backend did not close on '$3'"
	err=$(XS read "$BE/$1/$2/hotplug-error")
	echo "   refused: $err"
	echo "$err" | grep -q -- "$3" || fail "$1/$2: hotplug-error '$err' does not match '$3'"
	kill -0 $TB_PID || fail "tapback died"
}
# fe_restart DEVID -- the frontend closes and starts again; backend back to InitWait
fe_restart() {
	XS write "$FE/$1/state" 6 || fail "write"
	XS wait "$BE/1/$1/state" 6 10 >/dev/null || fail "backend did not follow to Closed"
	for k in ring-ref ring-ref0 ring-ref1 ring-page-order event-channel protocol; do
		XS rm "$FE/$1/$k" 2>/dev/null || true
	done
	XS write "$FE/$1/state" 1 || fail "write"
	XS wait "$BE/1/$1/state" 2 10 >/dev/null || fail "backend did not return to InitWait"
}
# exited PID -- gone, or a zombie its (re)parent has not reaped yet
exited() {
	for i in $(seq 50); do
		kill -0 "$1" 2>/dev/null || return 0
		[ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" = Z ] && return 0
		sleep 0.1
	done
	return 1
}
ntapdisks() { "$TD_BIN/tap-ctl" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

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

info "VBDs of other backends (no script, the stock block script) are left alone"
toolstack_add 1 202 "/dev/loop0" w ""
toolstack_add 1 203 "/dev/loop0" w /etc/xen/scripts/block
sleep 0.5
[ "$(XS read "$BE/1/202/state")" = 1 ] && [ "$(XS read "$BE/1/203/state")" = 1 ] ||
	fail "tapback touched a VBD that is not block-tdcrypt's"
XS rm "$BE/1/202" && XS rm "$BE/1/203"

info "malformed toolstack nodes: hotplug-error from tapback"
toolstack_add 1 51792 "aio:$T/x.img" "rwx"
expect_error 1 51792 "mode 'rwx'"
toolstack_add 1 99999999999 "aio:$T/x.img"
expect_error 1 99999999999 "devid"
toolstack_add notadomain 51712 "aio:$T/x.img"
expect_error notadomain 51712 "domid"
XS write "$BE/1/51808/frontend" /local/domain/2/device/vbd/51808 "$BE/1/51808/state" 1 \
	"$BE/1/51808/script" block-tdcrypt || fail "write"
expect_error 1 51808 "frontend '/local/domain/2/device/vbd/51808' is not"

info "InitWait, then the hotplug script: missing key, missing image, bad params"
toolstack_add 1 51728 "crypt:$LOWER:$IMG"
XS wait "$BE/1/51728/state" 2 10 >/dev/null || fail "no InitWait"
hotplug 1 51728 add && fail "the script succeeded without a key"
expect_error 1 51728 "no key loaded"
toolstack_add 1 51744 "aio:$T/no-such-image.img"
XS wait "$BE/1/51744/state" 2 10 >/dev/null || fail "no InitWait"
hotplug 1 51744 add && fail "the script succeeded without an image"
expect_error 1 51744 "does not exist"
toolstack_add 1 51760 "$T/disk.img"
XS wait "$BE/1/51760/state" 2 10 >/dev/null || fail "no InitWait"
hotplug 1 51760 add && fail "the script took params without a driver"
expect_error 1 51760 "names no driver"
toolstack_add 1 51776 "-a:/x"
XS wait "$BE/1/51776/state" 2 10 >/dev/null || fail "no InitWait"
hotplug 1 51776 add && fail "the script took params starting with -"
expect_error 1 51776 "not a tapdisk spec"
[ "$(ntapdisks)" = 0 ] || fail "a tapdisk is running after failed starts"
for d in 51728 51744 51760 51776 51792 51808; do XS rm "$BE/1/$d"; done

info "good VBD tap:crypt:$LOWER:IMG: InitWait with the ring's limits and features"
vdkey load "crypt:$LOWER:$IMG" --key-file "$KEY" >/dev/null || fail "vdkey load"
toolstack_add 1 51712 "tap:crypt:$LOWER:$IMG"
XS wait "$BE/1/51712/state" 2 10 >/dev/null || fail "backend state is not InitWait"
for kv in max-ring-page-order=4 feature-max-indirect-segments=256 feature-flush-cache=1 \
	feature-barrier=1 feature-discard=1 discard-granularity=4096 sector-size=512 \
	physical-sector-size=4096 info=0 feature-persistent=1; do
	[ "$(XS read "$BE/1/51712/${kv%%=*}")" = "${kv#*=}" ] ||
		fail "${kv%%=*} is '$(XS read "$BE/1/51712/${kv%%=*}")', not ${kv#*=}"
done
hotplug 1 51712 add || fail "block-tdcrypt add: $(cat "$T/script.err")"
[ "$(XS read "$BE/1/51712/hotplug-status")" = connected ] || fail "hotplug-status"
SOCK=$(XS read "$BE/1/51712/tapdisk-socket") || fail "no tapdisk-socket"
URI=$(XS read "$BE/1/51712/dom0-nbd-uri") || fail "no dom0-nbd-uri"
[ "$URI" = "$(uri_of "$SOCK")" ] || fail "dom0-nbd-uri $URI does not match tapdisk-socket $SOCK"
XS read "$BE/1/51712/nbd-socket" >/dev/null 2>&1 && fail "the old nbd-socket node is back"
echo "   tapdisk-socket $SOCK (for dom0 tools)"

info "dom0 tools reach the VBD through its NBD socket"
qemu-io -f raw -c "write -P 0x5a 0 1M" -c "write -P 0xa5 3M 64k" -c "flush" "$URI" >"$T/qio.out" ||
	fail "qemu-io write"
qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0xa5 3M 64k" -c "read -P 0 4M 64k" "$URI" \
	>"$T/qio.out" || fail "qemu-io read"
grep -qi "fail\|error" "$T/qio.out" && fail "pattern: $(cat "$T/qio.out")"

info "hostile frontend nodes are refused (hotplug-error, Closing), and it may start again"
fe() { XS write "$@" "$FE/51712/state" 3 || fail "frontend write"; }
fe "$FE/51712/ring-ref" 12abc "$FE/51712/event-channel" 15
fe_error 1 51712 "ring-ref is not a number"
fe_restart 51712
fe "$FE/51712/ring-ref" 99999999999 "$FE/51712/event-channel" 15
fe_error 1 51712 "ring-ref is not a number"
fe_restart 51712
fe "$FE/51712/ring-page-order" 5 "$FE/51712/ring-ref0" 8 "$FE/51712/event-channel" 15
fe_error 1 51712 "ring-page-order is not a number 0..4"
fe_restart 51712
fe "$FE/51712/ring-page-order" 1 "$FE/51712/ring-ref0" 8 "$FE/51712/event-channel" 15
fe_error 1 51712 "ring-ref1 is missing"
fe_restart 51712
fe "$FE/51712/ring-ref" 8 "$FE/51712/event-channel" -1
fe_error 1 51712 "event-channel is not a number"
fe_restart 51712
fe "$FE/51712/ring-ref" 8 "$FE/51712/event-channel" 15 "$FE/51712/protocol" "x86_64-abi; rm -rf /"
fe_error 1 51712 "protocol is neither"
fe_restart 51712
grep -q "xen-connect" "$T/tapback.log" && fail "tap-ctl xen-connect ran for a hostile frontend"

info "a well-formed frontend: tap-ctl xen-connect runs (and fails cleanly: no Xen here)"
fe "$FE/51712/ring-page-order" 2 "$FE/51712/ring-ref0" 8 "$FE/51712/ring-ref1" 9 \
	"$FE/51712/ring-ref2" 10 "$FE/51712/ring-ref3" 11 "$FE/51712/event-channel" 15 \
	"$FE/51712/protocol" x86_32-abi
expect_error 1 51712 "tap-ctl xen-connect: .*not started for Xen"
XS wait "$BE/1/51712/state" 5 10 >/dev/null || fail "backend not Closing after a failed connect"
kill -0 "$(XS read "$BE/1/51712/tapdisk-pid")" || fail "the tapdisk died"

info "toolstack Closing, frontend Closed -> Closed; the script's remove stops the tapdisk"
XS write "$FE/51712/state" 6 || fail "write"
XS wait "$BE/1/51712/state" 6 10 >/dev/null || fail "backend did not reach Closed"
TDPID=$(XS read "$BE/1/51712/tapdisk-pid")
hotplug 1 51712 remove || fail "block-tdcrypt remove: $(cat "$T/script.err")"
exited "$TDPID" || fail "tapdisk $TDPID still running after the script's remove"
XS rm "$BE/1/51712" || fail "rm"
XS rm "$FE/51712" || fail "rm"
[ "$(ntapdisks)" = 0 ] || fail "tapdisks left: $("$TD_BIN/tap-ctl" list)"
if [ $LOWER = qcow2 ]; then
	qemu-img check -q "$IMG" || fail "qemu-img check"
	echo "   qemu-img check: clean"
fi

info "a read-only VBD (mode r): info VDISK_READONLY, no discard or barrier, writes refused"
RAW=$T/ro.img
truncate -s 8M "$RAW"
toolstack_add 2 51712 "aio:$RAW" r
XS wait "$BE/2/51712/state" 2 10 >/dev/null || fail "ro VBD not in InitWait"
[ "$(XS read "$BE/2/51712/info")" = 4 ] || fail "info is not VDISK_READONLY"
[ "$(XS read "$BE/2/51712/feature-discard")" = 0 ] || fail "discard offered on a ro disk"
[ "$(XS read "$BE/2/51712/feature-barrier")" = 0 ] || fail "barrier offered on a ro disk"
hotplug 2 51712 add || fail "block-tdcrypt add (ro): $(cat "$T/script.err")"
ROURI=$(XS read "$BE/2/51712/dom0-nbd-uri")
qemu-io -f raw -c "write -P 1 0 4k" "$ROURI" 2>&1 | grep -qi "fail\|error\|denied\|read-only" ||
	fail "write to a read-only VBD did not fail"

info "nodes removed without the script's remove: tapback stops the tapdisk itself"
XS rm "$BE/2" || fail "rm"
for i in $(seq 100); do [ "$(ntapdisks)" = 0 ] && break; sleep 0.1; done
[ "$(ntapdisks)" = 0 ] || fail "tapdisks left: $("$TD_BIN/tap-ctl" list)"
grep -q "outlived its device" "$T/tapback.log" || fail "tapback did not say why it destroyed it"

info "the data survives: a new VBD on the same image reads it back"
toolstack_add 3 768 "crypt:$LOWER:$IMG"
XS wait "$BE/3/768/state" 2 10 >/dev/null || fail "no InitWait"
hotplug 3 768 add || fail "re-attach: $(cat "$T/script.err")"
URI=$(XS read "$BE/3/768/dom0-nbd-uri")
qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0xa5 3M 64k" "$URI" >"$T/qio.out" ||
	fail "qemu-io read back"
grep -qi "fail\|error" "$T/qio.out" && fail "pattern after re-attach"

info "a restarted tapback adopts the device"
kill -TERM $TB_PID
wait $TB_PID || fail "tapback exit status $?"
"$XEN/tapback" --xenstored-path "$XENSTORED_PATH" --tap-ctl "$SHIM/tap-ctl" --timeout 10 \
	2>>"$T/tapback.log" &
TB_PID=$!
_td_pids="$_td_pids $TB_PID"
for i in $(seq 50); do grep -q "adopted" "$T/tapback.log" && break; sleep 0.1; done
grep -q "backend/vbd/3/768: adopted in state 2" "$T/tapback.log" || fail "not adopted"
XS write "$BE/3/768/state" 5 "$BE/3/768/online" 0 || fail "write" # the toolstack detaches
XS rm "$FE/768" || fail "rm"                                      # the guest is gone
XS wait "$BE/3/768/state" 6 10 >/dev/null || fail "backend did not close for a gone frontend"
hotplug 3 768 remove || fail "remove"
XS rm "$BE/3/768" || fail "rm"
[ "$(ntapdisks)" = 0 ] || fail "tapdisk left after removal"
[ $LOWER = qcow2 ] && { qemu-img check -q "$IMG" || fail "qemu-img check (2)"; }
grep -qi "unsupported message" "$T/xsd.log" && fail "libxenstore sent a message the stand-in does not know"

info "SIGTERM: tapback exits 0"
kill -TERM $TB_PID
wait $TB_PID || fail "tapback exit status $?"
_ok=1
echo ok
