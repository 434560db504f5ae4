#!/bin/bash
# The Xen blkif bench (issue 17): our tapdisk serving a PV guest's ring
# against the kernel's xen-blkback on the same raw image through a loop
# device, in the real-Xen rig (tests/xen/rig.sh, docs/XEN.md "The test").
# Each round boots the bench guest four times: ours in place (aio:), ours
# copied under a layer (qos:aio:), ours with grant copy, then blkback.
#
# Usage: bench/xen.sh [--rounds N] [--secs S] [--profile] [--log FILE]
#   --rounds N   alternating rounds (default 3)
#   --secs S     seconds per iobench job (default 5)
#   --profile    also the profile phase (strace -c of each datapath)
#   --log FILE   analyse a rig console log already written, run nothing
# Needs root and qemu-system-x86_64 (as make check-xen). Prints, per
# workload, our ratio to blkback in every round and over the sums of all
# rounds, and dom0's CPU ticks per MB each guest moved. A machine that
# does other work meanwhile moves the figures by several times: run it
# alone (docs/PERFORMANCE.md).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3 SECS=5 PHASES=bench LOG=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=$2 && shift ;;
	--secs) SECS=$2 && shift ;;
	--profile) PHASES="bench profile" ;;
	--log) LOG=$2 && shift ;;
	-h | --help)
		sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench/xen.sh: unknown argument '$1' (--help)" >&2
		exit 2
		;;
	esac
	shift
done
if [ -z "$LOG" ]; then
	cd "$SRC"
	XENRIG_PHASES="$PHASES" XENRIG_BENCH_ROUNDS=$ROUNDS XENRIG_BENCH_SECS=$SECS \
		XENRIG_TIMEOUT=$((900 + ROUNDS * 600)) make check-xen
	LOG=$SRC/${BUILD:-build}/xen-rig/serial.log
fi
grep -a "XENRIG-PERF\|XENRIG-PROFILE .*requests;" "$LOG" || true
python3 - "$LOG" <<'EOF'
import collections, re, sys

mbps = collections.defaultdict(dict)  # (datapath, test, qd) -> {round: MB/s}
moved = collections.defaultdict(float)  # guest label -> MB moved
cpu = {}
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("IOBENCH "):
        f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        label = f["label"]
        if "xvdc" in label:  # the crypt:qcow2 disk beside round 1
            continue
        rnd, base = label[-2:], label[:-3].replace("-qd4", "")
        mbps[(base, f["test"], f["qd"])][rnd] = float(f["MBps"])
        moved[base + "-" + rnd] += float(f["MBps"]) * float(f["secs"])
    m = re.match(r"dom0\[cpu\]: (\S+): user (\d+) nice \d+ system (\d+)", line)
    if m:
        cpu[m.group(1)] = int(m.group(2)) + int(m.group(3))
print("ratio to xen-blkback + loop, per round (sums of all rounds)")
for qd in ("1", "4"):
    for test in ("seqread", "seqwrite", "randread", "randwrite"):
        k = mbps[("blkback-loop", test, qd)]
        row = []
        for dp, name in (("tapdisk-aio", "in place"), ("tapdisk-pcopy", "copied"), ("tapdisk-gcopy", "grant copy")):
            o = mbps[(dp, test, qd)]
            rs = [r for r in sorted(o) if r in k and k[r] > 0]
            if not rs:
                continue
            per = " ".join("%.2f" % (o[r] / k[r]) for r in rs)
            row.append("%s %s (%.2f)" % (name, per, sum(o[r] for r in rs) / sum(k[r] for r in rs)))
        print("  %-9s QD%s  %s" % (test, qd, " | ".join(row)))
print("dom0 CPU ticks (user + system) per MB moved")
for label in sorted(cpu):
    if moved.get(label):
        print("  %-20s %.2f" % (label, cpu[label] / moved[label]))
EOF
