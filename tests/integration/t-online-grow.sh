#!/bin/bash
# test: long — started first, so the parallel run does not end waiting for it
# Online grow (issue 19): tap-ctl resize of a served crypt:qcow2 and
# crypt:aio VBD, with integrity (the metadata moves: docs/FORMAT.md
# "Growing") and without. A new NBD client sees the new size (nbdinfo),
# the new range reads as zeros, old data is intact, the new range takes
# writes; after a restart the same holds, the whole disk reads without an
# error and qemu-img check passes (qcow2). A small grow (smaller than the
# integrity metadata: the new metadata goes past the old, leaving a gap)
# and a second grow follow. kill -9 of the tapdisk at random moments of a
# resize leaves the old or the new size, both readable with old data
# intact. Refusals: shrinking, a bad size, and a chain whose layer has no
# grow operation (named in the message).
. "$TD_SRC/tests/lib/common.sh"
need qemu-img qemu-io nbdinfo nbdcopy fio keyctl python3
M=$((1 << 20))

# check URI SIZE NEWFROM -- size, old patterns, zeros from NEWFROM to the
# end (minus what the caller wrote there), whole-disk read
check() {
	local uri=$1 size=$2 from=$3 got
	got=$(nbdinfo --size "$uri") || fail "nbdinfo $uri"
	[ "$got" = "$size" ] || fail "a new client sees $got bytes, expected $size"
	qemu-io -f raw -c "read -P 0x5a 0 1M" -c "read -P 0x6b $((OLD0 - M)) 1M" "$uri" |
		grep -c "read 1048576" | grep -qx 2 || fail "old data is not intact"
	if [ "$from" -lt "$size" ]; then
		qemu-io -f raw -c "read -P 0 $from $((size - from))" "$uri" | grep -q "^read" ||
			fail "the new range [$from, $size) does not read as zeros"
	fi
	nbdcopy "$uri" null: || fail "whole-disk read"
}

serve() {
	URI=$(tap-ctl create -a "crypt:$LOWER") || fail "create crypt:$LOWER"
	SOCK=${URI#nbd+unix:///?socket=}
}

pid_of() { tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])'; }

one_case() {
	local fmt=$1 integ=$2 img opts=()
	info "crypt:$fmt, integrity $integ"
	img=$T/disk.$fmt.$integ
	if [ "$fmt" = qcow2 ]; then
		qemu-img create -q -f qcow2 "$img" 64M || fail "qemu-img create"
	else
		truncate -s 64M "$img"
	fi
	LOWER=$fmt:$img
	[ "$integ" = none ] && opts=(--integrity none)
	printf 'grow %s %s' "$fmt" "$RANDOM" >"$T/key"
	crypt_image "$LOWER" "$T/key" "${opts[@]+"${opts[@]}"}"
	serve
	OLD0=$(nbdinfo --size "$URI")
	qemu-io -f raw -c "write -P 0x5a 0 1M" -c "write -P 0x6b $((OLD0 - M)) 1M" "$URI" >/dev/null ||
		fail "pattern writes"
	# an NBD client that stays connected across the resize
	qemu-io -f raw -c "read -P 0x5a 0 4k" "$URI" >/dev/null || fail "read before"

	info "grow by 40 MiB while serving (fio verify runs across it)"
	NEW=$((OLD0 + 40 * M))
	fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 \
		--offset=4M --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--verify_state_save=0 --time_based --runtime=6 --verify_backlog=256 \
		--output="$T/fio.txt" &
	fpid=$!
	sleep 2
	tap-ctl resize -s "$SOCK" "$NEW" || fail "tap-ctl resize"
	wait $fpid || { cat "$T/fio.txt"; fail "fio error across the resize"; }
	grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio errors"; }
	tap-ctl list | grep -q running || fail "not running after resize: $(tap-ctl list)"
	check "$URI" "$NEW" "$OLD0"
	qemu-io -f raw -c "write -P 0x7c $((OLD0 + 20 * M)) 1M" -c "read -P 0x7c $((OLD0 + 20 * M)) 1M" \
		-c "write -P 0x7d $((NEW - M)) 1M" -c "read -P 0x7d $((NEW - M)) 1M" "$URI" |
		grep -c "read 1048576" | grep -qx 2 || fail "write+verify in the new range"
	f=$(stat_of -s "$SOCK" integrity_failures)
	[ "$f" = 0 ] || fail "$f integrity failures"

	info "restart: the new size and data persist"
	tap-ctl destroy -s "$SOCK" || fail destroy
	serve
	[ "$(nbdinfo --size "$URI")" = "$NEW" ] || fail "size after restart"
	qemu-io -f raw -c "read -P 0x7c $((OLD0 + 20 * M)) 1M" -c "read -P 0x7d $((NEW - M)) 1M" \
		-c "read -P 0 $OLD0 $((20 * M))" "$URI" | grep -c "^read" | grep -qx 3 ||
		fail "new-range data after restart"
	check "$URI" "$NEW" $((NEW))

	info "a small grow (4 KiB: the metadata moves past the old one) and another"
	tap-ctl resize -s "$SOCK" $((NEW + 4096)) || fail "small resize"
	check "$URI" $((NEW + 4096)) "$NEW"
	tap-ctl resize -s "$SOCK" $((NEW + 12 * M)) || fail "second resize"
	check "$URI" $((NEW + 12 * M)) "$NEW"
	qemu-io -f raw -c "read -P 0x7c $((OLD0 + 20 * M)) 1M" "$URI" | grep -q "^read" ||
		fail "data after the second grow"
	tap-ctl resize -s "$SOCK" $((NEW + 12 * M)) || fail "resize to the same size"

	info "refusals"
	out=$(tap-ctl resize -s "$SOCK" $((NEW - 4096)) 2>&1) && fail "shrink accepted"
	echo "$out" | grep -q "shrinking is not supported" || fail "shrink message: $out"
	out=$(tap-ctl resize -s "$SOCK" 1000 2>&1) && fail "unaligned size accepted"
	echo "$out" | grep -q "not a size" || fail "bad size message: $out"
	[ "$(nbdinfo --size "$URI")" = $((NEW + 12 * M)) ] || fail "a refusal changed the size"
	tap-ctl destroy -s "$SOCK" || fail destroy
	if [ "$fmt" = qcow2 ]; then
		qemu-img check -q "$img" || fail "qemu-img check"
		# the lower image holds the crypt header and the metadata too
		vs=$(qemu-img info --output=json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
		[ "$vs" -gt $((NEW + 12 * M)) ] || fail "qcow2 virtual size $vs"
	fi
	vdkey unload "$LOWER" >/dev/null 2>&1
}

kill_loop() {
	local fmt=$1 img cur want got pid r
	info "kill -9 during resize, crypt:$fmt"
	img=$T/kill.$fmt
	if [ "$fmt" = qcow2 ]; then qemu-img create -q -f qcow2 "$img" 32M; else truncate -s 32M "$img"; fi
	LOWER=$fmt:$img
	printf 'kill %s %s' "$fmt" "$RANDOM" >"$T/key"
	crypt_image "$LOWER" "$T/key"
	serve
	OLD0=$(nbdinfo --size "$URI")
	qemu-io -f raw -c "write -P 0x5a 0 1M" -c "write -P 0x6b $((OLD0 - M)) 1M" "$URI" >/dev/null ||
		fail "pattern writes"
	cur=$OLD0
	grown=0
	for r in $(seq 1 10); do
		want=$((cur + (r % 3 == 0 ? 4096 : 9 * M)))
		pid=$(pid_of)
		tap-ctl resize -s "$SOCK" "$want" >/dev/null 2>&1 &
		sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
		kill -9 "$pid"
		wait $! 2>/dev/null
		sleep 0.2
		tap-ctl list >/dev/null 2>&1 # removes the dead socket
		serve
		got=$(nbdinfo --size "$URI")
		[ "$got" = "$cur" ] || [ "$got" = "$want" ] ||
			fail "round $r: size $got after kill -9, expected $cur or $want"
		[ "$got" = "$want" ] && grown=$((grown + 1))
		check "$URI" "$got" "$cur"
		cur=$got
		f=$(stat_of -s "$SOCK" integrity_failures)
		[ "$f" = 0 ] || fail "round $r: $f integrity failures"
	done
	echo "kill -9 rounds: 10, grown in $grown"
	tap-ctl destroy -s "$SOCK"
	if [ "$fmt" = qcow2 ]; then
		# kill -9 may leak clusters (docs/FORMAT-qcow2.md): rc 3, repairable;
		# anything else (corruption) fails
		qemu-img check "$img" >"$T/check.txt" 2>&1
		rc=$?
		[ $rc = 0 ] || [ $rc = 3 ] || { cat "$T/check.txt"; fail "qemu-img check after the kills: rc $rc"; }
		qemu-img check -q -r leaks "$img" >/dev/null 2>&1
		qemu-img check -q "$img" || fail "leaks not repaired"
	fi
	vdkey unload "$LOWER" >/dev/null 2>&1
}

tapdisk drivers | grep -q '^qcow2' || skip "no qcow2 driver in this build"
one_case qcow2 default
one_case aio default
one_case qcow2 none
one_case aio none
kill_loop aio
kill_loop qcow2

info "a sparse 1 TiB crypt:aio grows by 64 GiB and stays sparse"
if truncate -s 1T "$T/big.img" 2>/dev/null; then
	printf 'grow big %s' "$RANDOM" >"$T/key"
	crypt_image "aio:$T/big.img" "$T/key"
	URI=$(tap-ctl create -a "crypt:aio:$T/big.img") || fail "serve 1 TiB"
	SOCK=${URI#nbd+unix:///?socket=}
	s0=$(nbdinfo --size "$URI")
	for off in 0 500G $((s0 - M)); do
		qemu-io -f raw -c "write -P 0x5e $off 1M" "$URI" >/dev/null || fail "write at $off"
	done
	u0=$(du -k "$T/big.img" | cut -f1)
	tap-ctl resize -s "$SOCK" $((s0 + (64 << 30))) || fail "1 TiB resize"
	u1=$(du -k "$T/big.img" | cut -f1)
	echo "allocated before/after the grow: $u0 / $u1 KiB"
	# the table of the written pages only (not 16 GiB of zeros)
	[ $((u1 - u0)) -lt 65536 ] || fail "the grow allocated $((u1 - u0)) KiB"
	[ "$(nbdinfo --size "$URI")" = $((s0 + (64 << 30))) ] || fail "1 TiB: new size"
	qemu-io -f raw -c "read -P 0x5e 0 1M" -c "read -P 0x5e 500G 1M" -c "read -P 0x5e $((s0 - M)) 1M" \
		-c "read -P 0 $s0 1M" -c "write -P 0x6f $((s0 + (60 << 30))) 1M" \
		-c "read -P 0x6f $((s0 + (60 << 30))) 1M" "$URI" | grep -c "^read" | grep -qx 5 ||
		fail "1 TiB: data after the grow"
	tap-ctl destroy -s "$SOCK" || fail destroy
	vdkey unload "aio:$T/big.img" >/dev/null 2>&1
	rm -f "$T/big.img"
else
	echo "(the filesystem under $T cannot hold a 1 TiB sparse file: part skipped)"
fi

info "a lower layer without grow (crypt:vhd): refused, naming it, nothing changed"
qemu-img create -q -f vpc -o subformat=dynamic "$T/d.vhd" 32M || fail "qemu-img create vpc"
printf 'grow vhd %s' "$RANDOM" >"$T/key"
crypt_image "vhd:$T/d.vhd" "$T/key"
URI=$(tap-ctl create -a "crypt:vhd:$T/d.vhd") || fail "serve crypt:vhd"
SOCK=${URI#nbd+unix:///?socket=}
s0=$(nbdinfo --size "$URI")
qemu-io -f raw -c "write -P 0x5a 0 1M" "$URI" >/dev/null || fail "vhd pattern"
out=$(tap-ctl resize -s "$SOCK" $((s0 + M)) 2>&1) && fail "crypt:vhd grew"
echo "$out" | grep -q "the vhd layer cannot grow online" || fail "message: $out"
[ "$(nbdinfo --size "$URI")" = "$s0" ] || fail "size changed"
qemu-io -f raw -c "read -P 0x5a 0 1M" "$URI" | grep -q "^read" || fail "not serving after the refusal"
tap-ctl destroy -s "$SOCK"
URI=$(tap-ctl create -a "crypt:vhd:$T/d.vhd") || fail "reopen crypt:vhd after the refusal"
[ "$(nbdinfo --size "$URI")" = "$s0" ] || fail "size changed after reopen"
tap-ctl destroy -s "${URI#nbd+unix:///?socket=}"
echo ok
