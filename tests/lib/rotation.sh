# Shared steps of the volume-key rotation tests. Source after
# tests/lib/common.sh:
#   . "$TD_SRC/tests/lib/rotation.sh"

# rot_integrity_disk SIZE PASSPHRASE: a crypt:aio image with the integrity
# layer (crypt_aio_disk); sets LOWER, DESC, NB (data blocks) and writes the
# volume key to $T/old.key
rot_integrity_disk() {
	crypt_aio_disk "$1" "$2"
	LOWER=aio:$IMG
	vdkey list "$LOWER" --json | grep -q '"integrity": *"hmac-sha256"' || fail "no integrity layer"
	DESC=$(key_desc "$LOWER")
	local ds
	ds=$(vdkey list "$LOWER" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_size"])')
	NB=$((ds / 4096))
	keyctl pipe "$(keyctl search @u user "$DESC")" >"$T/old.key" || fail "read the old key"
}

# rot_data_and_fio [FIO ARGS...]: 32 MiB of random data at offset 0 of the
# VBD at $URI (kept in $T/before.raw), then fio write+verify rounds over
# 40M-56M in the background until rot_fio_stop; $T/rounds counts the
# rounds, a failed round goes to $T/fio-failed
rot_data_and_fio() {
	head -c 32M /dev/urandom >"$T/before.raw"
	nbdcopy "$T/before.raw" "$URI" || fail "nbdcopy in"
	rm -f "$T/stop" "$T/rounds" "$T/fio-failed"
	(
		i=0
		while [ -d "$T" ] && [ ! -e "$T/stop" ]; do
			i=$((i + 1))
			fio --name=v$i --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k \
				--bsrange=4k-64k --iodepth=8 --offset=40M --size=16M --verify=crc32c \
				--verify_fatal=1 --do_verify=1 "$@" --randseed=$i \
				--output="$T/fio.$i.txt" >/dev/null 2>&1 ||
				{ echo "round $i" >>"$T/fio-failed"; cat "$T/fio.$i.txt" >>"$T/fio-failed"; }
			echo "$i" >"$T/rounds"
		done
	) &
	FIO_LOOP=$!
	td_on_exit "touch '$T/stop'; kill $FIO_LOOP 2>/dev/null"
	sleep 1
}

# rot_fio_stop: stops the rounds after the one running now; fails when any
# round failed
rot_fio_stop() {
	touch "$T/stop"
	wait "$FIO_LOOP"
	[ -e "$T/fio-failed" ] && { cat "$T/fio-failed"; fail "fio verify failed during the rotation"; }
	return 0
}

# reencsim_check OUT: the summary line of a reencsim run in OUT names at
# least 100 crash images, every one finished, and at least two writes of
# the trusted generation
reencsim_check() {
	local line images finished gw
	line=$(grep '^reencsim: seed=' "$1") || fail "no summary line"
	images=$(sed -n 's/.* crash_images=\([0-9]*\).*/\1/p' <<<"$line")
	finished=$(sed -n 's/.* finished=\([0-9]*\).*/\1/p' <<<"$line")
	gw=$(sed -n 's/.* gen_writes=\([0-9]*\).*/\1/p' <<<"$line")
	[ "${images:-0}" -ge 100 ] || fail "only ${images:-0} crash images"
	[ "$finished" = "$images" ] || fail "finished in $finished of $images images"
	[ "${gw:-0}" -ge 2 ] || fail "the trusted generation was written $gw times"
}

# rot_old_key_refused KEYFILE: with the volume key of KEYFILE (the one
# before the rotation) put into the keyring by hand as the image's key,
# tapdisk refuses to serve crypt:$LOWER, saying the key does not match the
# header; the keyring is left without the image's key
rot_old_key_refused() {
	local out
	vdkey unload "$LOWER" >/dev/null 2>&1
	keyctl padd user "$DESC" @u <"$1" >/dev/null || fail "keyctl padd"
	out=$(tapdisk serve "crypt:$LOWER" --socket "$SOCK" 2>&1) && fail "served with the old key"
	echo "$out" | grep -q "does not match its header" || fail "old key message: $out"
	vdkey unload "$LOWER" >/dev/null 2>&1
	return 0
}

# rot_ciphertext_changed BEFORE AFTER: no 4 KiB block of the ciphertext
# copy AFTER equals the same block of BEFORE
rot_ciphertext_changed() {
	python3 - "$1" "$2" <<'PY' || fail "some block kept its old ciphertext"
import sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
same = sum(1 for i in range(0, len(a), 4096) if a[i:i+4096] == b[i:i+4096])
sys.exit(1 if same else 0)
PY
}

# rot_write_and_kill I EXP N: a 1 MiB client write (qemu-io over $URI,
# flushed) of a pattern named by I at a random MiB below 70M, mirrored
# into the expected-image file EXP, then kill -9 of the tapdisk $TD_PID
# after a random 0.00-0.(N-1)9 s
rot_write_and_kill() {
	local off pat
	off=$(((RANDOM % 70) << 20))
	pat=$((($1 * 37) % 255 + 1))
	qemu-io -f raw -c "write -P $pat $off 1M" -c flush "$URI" >/dev/null || fail "client write $1"
	python3 - "$2" "$off" "$pat" <<'PY'
import sys
p, off, pat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(p, "r+b") as f:
    f.seek(off); f.write(bytes([pat]) * (1 << 20))
PY
	sleep "0.$((RANDOM % $3))$((RANDOM % 10))"
	kill -9 "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	rm -f "$SOCK"
}
