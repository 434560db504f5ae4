#!/bin/bash
# Write amplification of crypt + integrity (issue 4, "Must show" 4): 64 MiB
# of 1 MiB sequential writes with a flush every 8 MiB through qemu-io over
# NBD; bytes the aio driver wrote to the image (lower_bytes_written, which
# includes journal records, tag-table pages and superblocks) divided by the
# bytes the client wrote must be <= 1.1. The VBD is paused before the
# counters are read, so the checkpoint that writes the tag table (and would
# otherwise happen at close, unseen) is counted too.
. "$TD_SRC/tests/lib/common.sh"
need qemu-io keyctl python3
crypt_aio_disk 97M wamp
td_serve "crypt:aio:$IMG" "$SOCK"

stats() { tap-ctl stats -p "$TD_PID" --json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
lower0=$(stats | field lower_bytes_written)
client0=$(stats | field bytes_written)

info "64 x 1 MiB sequential writes, a flush after every 8"
cmds=()
for i in $(seq 0 63); do
	cmds+=(-c "write -P $((i % 250 + 1)) ${i}M 1M")
	[ $(((i + 1) % 8)) = 0 ] && cmds+=(-c "flush")
done
qemu-io -f raw "${cmds[@]}" "$URI" >"$T/qemu-io.out" || fail "qemu-io: $(tail -n 3 "$T/qemu-io.out")"
grep -qi "fail" "$T/qemu-io.out" && fail "a write failed: $(grep -i fail "$T/qemu-io.out" | head -n 3)"
tap-ctl pause -p "$TD_PID" >/dev/null || fail "pause"
lower=$(($(stats | field lower_bytes_written) - lower0))
client=$(($(stats | field bytes_written) - client0))
flushes=$(stats | field flushes)
[ "$client" = $((64 << 20)) ] || fail "client wrote $client bytes, expected $((64 << 20))"
[ "$flushes" -ge 8 ] || fail "only $flushes flushes reached the VBD"
ratio=$(python3 -c "print('%.4f' % ($lower / $client))")
echo "write amplification: $lower lower bytes / $client client bytes = $ratio"
python3 -c "import sys; sys.exit(0 if $lower / $client <= 1.1 else 1)" ||
	fail "write amplification $ratio > 1.1"
python3 -c "import sys; sys.exit(0 if $lower >= $client else 1)" ||
	fail "lower bytes ($lower) < client bytes ($client): is the counter wired?"

info "the data is intact after unpause"
tap-ctl unpause -p "$TD_PID" >/dev/null || fail "unpause"
qemu-io -f raw -c "read -P 1 0 1M" -c "read -P 64 63M 1M" "$URI" | grep -qi fail && fail "read back"
td_stop "$TD_PID" || fail "exit"
echo ok
