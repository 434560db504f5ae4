#!/bin/bash
# Pause/unpause 20 times under a running fio verify workload on an
# encrypted, integrity-checked disk: no client error, no integrity error.
. "$TD_SRC/tests/lib/common.sh"
need fio keyctl
IMG=$T/disk.img
KEY=$T/key
truncate -s 200M "$IMG"
printf 'pause test passphrase' >"$KEY"
crypt_image "aio:$IMG" "$KEY"
URI=$(tap-ctl create -a "crypt:aio:$IMG") || fail create
SOCK=${URI#nbd+unix:///?socket=}
fio --name=v --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --size=96M \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --time_based \
	--runtime=12 --verify_backlog=512 --output="$T/fio.txt" &
F=$!
sleep 1
for i in $(seq 1 20); do
	tap-ctl pause -s "$SOCK" || fail "pause $i"
	sleep 0.1
	tap-ctl unpause -s "$SOCK" || fail "unpause $i"
	sleep 0.3
done
wait $F || { cat "$T/fio.txt"; fail "fio reported an error"; }
grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio errors"; }
st=$(tap-ctl stats -s "$SOCK" --json)
echo "$st"
echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["errors"]==0 and s["integrity_failures"]==0, s' ||
	fail "errors in stats"
tap-ctl destroy -s "$SOCK" || fail destroy
echo ok
