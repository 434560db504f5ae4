#!/usr/bin/env python3
"""Ten VBDs at once: per-process peak RSS and aggregate throughput against
one VBD, for crypt:qcow2 (encryption + integrity).

    bench/multi_vbd.py [--n 10] [--runtime 10] [--size 256M] [--json out.json]

Runs random 4k QD32 reads and writes against one tapdisk, then against N
tapdisks at once (one fio job per socket), and prints per-process VmHWM
and the aggregate ratio."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def start(n, d, size):
    env = dict(os.environ, TAPDISK_RUNDIR=os.path.join(d, "run"))
    os.makedirs(env["TAPDISK_RUNDIR"], exist_ok=True)
    key = os.path.join(d, "key")
    with open(key, "w") as f:
        f.write(bench.PASS)
    procs = []
    for i in range(n):
        img = os.path.join(d, "vbd%d.qcow2" % i)
        sock = os.path.join(d, "vbd%d.sock" % i)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(size + size // 16 + (8 << 20))],
                       check=True)
        lower = "qcow2:" + img
        vd = os.path.join(bench.BIN, "vdkey")
        subprocess.run([vd, "format", lower, "--key-file", key, "--pbkdf", "pbkdf2",
                        "--pbkdf-iterations", "1000"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([vd, "load", lower, "--key-file", key], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        p = subprocess.Popen([os.path.join(bench.BIN, "tapdisk"), "serve", "crypt:" + lower,
                              "--socket", sock], env=env, stderr=subprocess.DEVNULL)
        bench.wait_socket(sock, p)
        procs.append((p, sock))
    return procs


def fio_multi(socks, rw, runtime, size):
    cmd = ["fio", "--output-format=json", "--group_reporting"]
    for i, s in enumerate(socks):
        cmd += ["--name=j%d" % i, "--ioengine=nbd", "--uri=nbd+unix:///?socket=" + s,
                "--rw=" + rw, "--bs=4k", "--iodepth=32", "--size=" + size, "--time_based",
                "--runtime=%d" % runtime, "--norandommap", "--randrepeat=0"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out[out.index("{"):])["jobs"][0]
    return j["read"]["iops"] + j["write"]["iops"]


def hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--size", default="256M")
    ap.add_argument("--json")
    a = ap.parse_args()
    size = int(a.size[:-1]) << {"M": 20, "G": 30}[a.size[-1]]
    d = tempfile.mkdtemp(prefix="tdmulti.", dir="/var/tmp")
    res = {"n": a.n, "runtime": a.runtime, "command": " ".join(sys.argv)}
    procs = []
    try:
        procs = start(a.n, d, size)
        socks = [s for _, s in procs]
        for rw in ("randwrite", "randread"):
            one = fio_multi(socks[:1], rw, a.runtime, a.size)
            many = fio_multi(socks, rw, a.runtime, a.size)
            res[rw] = {"one_vbd_iops": one, "n_vbds_iops": many, "ratio": many / one if one else 0}
            print("%-9s one VBD %8.0f IOPS, %d VBDs %8.0f IOPS, ratio %.2f" %
                  (rw, one, a.n, many, many / one if one else 0), flush=True)
        res["peak_rss_kib"] = [hwm(p.pid) for p, _ in procs]
        print("peak RSS per tapdisk (MiB):", " ".join("%.1f" % (k / 1024) for k in res["peak_rss_kib"]))
    finally:
        for p, _ in procs:
            p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
