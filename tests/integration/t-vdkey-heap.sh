#!/bin/bash
# vdkey's memory is locked while a TPM2 keyslot's KEK is in it (SECURITY.md,
# "vdkey's heap"): `vdkey load` unseals through a relay in front of a real
# software TPM (swtpm) that holds vdkey's next TPM command right after
# TPM2_Unseal (tests/lib/tpm_hold_proxy.py) -- the unsealed KEK is then in
# vdkey's secure buffer and in libtss2's heap blocks. While it waits, every
# writable mapping of the process, the heap first, must be locked
# (/proc/PID/smaps VmFlags "lo"), and VmLck must cover them. Then the load
# goes on and succeeds. (That nothing is left after the libraries freed
# their copies is tests/unit/test_heap_wipe.c.)
# Sanitizer builds lock nothing (the runtime ignores mlockall): there the
# locking assertions are skipped, the held load still runs.
. "$TD_SRC/tests/lib/common.sh"
need swtpm tpm2_pcrread qemu-img python3 keyctl
case "$BUILD" in *san*) SAN=1 ;; *) SAN=0 ;; esac

. "$TD_SRC/tests/lib/tokens.sh"

mkdir -p "$T/relay"
start_swtpm tpm
TCTI=$TCTI_tpm
RPORT=$(free_port_pair)
python3 "$TD_SRC/tests/lib/tpm_hold_proxy.py" "$RPORT" "$PORT" "$T/relay" &
_td_pids="$_td_pids $!"
for i in $(seq 1 100); do
	[ -f "$T/relay/ready" ] && break
	[ "$i" = 100 ] && fail "the TPM relay did not start"
	sleep 0.1
done
unset TPM2TOOLS_TCTI TCTI_ENV

KEY=$T/pass
printf 'heap test passphrase %s' "$RANDOM" >"$KEY"
Q=$T/disk.qcow2
qemu-img create -q -f qcow2 "$Q" 16M
vdkey format "qcow2:$Q" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
	fail "format"
td_on_exit "vdkey unload qcow2:$Q >/dev/null 2>&1"
vdkey enroll "qcow2:$Q" --key-file "$KEY" --tpm2 --pcrs 16 --tpm2-device "$TCTI" >/dev/null ||
	fail "enroll --tpm2"

info "vdkey load, held by the relay just after TPM2_Unseal"
vdkey load "qcow2:$Q" --token-only --tpm2-device "swtpm:host=127.0.0.1,port=$RPORT" \
	</dev/null >"$T/load.out" 2>&1 &
VPID=$!
_td_pids="$_td_pids $VPID"
for i in $(seq 1 300); do
	[ -f "$T/relay/held" ] && break
	kill -0 "$VPID" 2>/dev/null || fail "vdkey load ended before unsealing: $(cat "$T/load.out")"
	[ "$i" = 300 ] && fail "vdkey never reached TPM2_Unseal: $(cat "$T/load.out")"
	sleep 0.1
done

# every writable mapping locked, the heap among them; VmLck covers them
[ $SAN = 1 ] && info "sanitizer build: the locking is not checked"
[ $SAN = 1 ] || python3 - "$VPID" <<'PY' || fail "vdkey's memory is not locked while it holds the KEK"
import re, sys
pid = sys.argv[1]
maps, cur = [], None
for line in open(f"/proc/{pid}/smaps"):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
    if m:
        cur = {"lo": int(m[1], 16), "hi": int(m[2], 16), "perms": m[3],
               "name": m[4] or "anonymous", "flags": []}
        maps.append(cur)
    elif line.startswith("VmFlags:"):
        cur["flags"] = line.split()[1:]
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
vmlck = int(status["VmLck"].split()[0]) * 1024
# the kernel's AIO completion ring (libaio) is a special mapping mlock skips;
# it holds completion events, never a key
writable = [m for m in maps if m["perms"].startswith("rw") and not m["name"].startswith("/[aio]")]
unlocked = [m for m in writable if "lo" not in m["flags"]]
heap = [m for m in maps if m["name"] == "[heap]"]
wsize = sum(m["hi"] - m["lo"] for m in writable)
print(f"VmLck {vmlck >> 10} KiB; writable mappings {len(writable)}, {wsize >> 10} KiB, "
      f"unlocked {len(unlocked)}; heap "
      f"{'locked' if heap and 'lo' in heap[0]['flags'] else 'NOT locked'}")
for m in unlocked[:10]:
    print(f"  not locked: {m['lo']:x}-{m['hi']:x} {m['perms']} {m['name']}")
ok = heap and "lo" in heap[0]["flags"] and not unlocked and vmlck >= wsize
sys.exit(0 if ok else 1)
PY

info "released: the load finishes, opened by the TPM2 slot"
touch "$T/relay/release"
wait "$VPID" || fail "vdkey load failed: $(cat "$T/load.out")"
grep -q "keyslot 1" "$T/load.out" || fail "not opened by the TPM2 slot: $(cat "$T/load.out")"
grep -qi "not locked" "$T/load.out" && fail "vdkey warned as root: $(cat "$T/load.out")"
vdkey unload "qcow2:$Q" >/dev/null || fail "unload"

if [ $SAN = 0 ] && command -v setpriv >/dev/null && command -v prlimit >/dev/null; then
	info "without the right to lock it all (RLIMIT_MEMLOCK 64 KiB, not root's to lift): a warning"
	# CAP_SYS_RESOURCE and CAP_IPC_LOCK dropped from the bounding set
	out=$(prlimit --memlock=65536:65536 setpriv --inh-caps=-all \
		--bounding-set=-sys_resource,-ipc_lock \
		vdkey load "qcow2:$Q" --token-only --tpm2-device "$TCTI" </dev/null 2>&1) ||
		fail "load under a small memlock limit: $out"
	echo "$out" | grep -q "warning: vdkey's heap is not locked in memory" ||
		fail "no warning under a small memlock limit: $out"
	echo "$out" | grep -q "LimitMEMLOCK=infinity" || fail "the warning says not what to do: $out"
	vdkey unload "qcow2:$Q" >/dev/null || fail "unload"
fi
echo "PASS"
