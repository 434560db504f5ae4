#!/usr/bin/env python3
"""Volume-key rotation figures (docs/FORMAT.md, "Volume-key rotation"):
the rotation's own rate, idle and under guest load, and the guest's
throughput with and without a rotation under way.

    bench/reencrypt.py [--size 1G] [--rounds 3] [--dir /var/tmp] [--runtime 10]
                       [--integrity none|hmac-sha256]
                       [--bin DIR]   (tapdisk, tap-ctl, vdkey; default build/bin)

Per round, on a fresh crypt:aio image (--integrity none by default)
filled with data and served by tapdisk over NBD:
  1. rotation with no guest I/O: tap-ctl pause, vdkey reencrypt, tap-ctl
     unpause --next-key, poll vdkey reencrypt --status until it ends;
  2. fio 4k random read/write (70/30, iodepth 16) for --runtime seconds:
     the guest's IOPS without a rotation;
  3. a second rotation with the same fio job running for 80 % of the idle
     rotation's time (so it stays inside the pass): the guest's IOPS during
     a rotation, and the rotation's rate under that load.
With --integrity hmac-sha256 the pass ends when every block (and its
tag) moved and the tapdisk switched the tree, superblock, journal and
header to the new key while it serves (docs/FORMAT.md, "Volume-key
rotation with the integrity layer"); "switch" is the time from the first
status poll (every 50 ms) that shows every block moved to the first that
shows no rotation: an upper bound, 0 when no poll fell inside it.
Prints each round and the medians. The machine is shared: run it several
times and report medians (docs/PERFORMANCE.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")


def set_bin(d):
    global BIN
    BIN = os.path.abspath(d)


def run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


def size_bytes(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1].upper()] if s[-1].upper() in mult else int(s)


def moved_all(st):
    """integrity images: every block moved, the switch under way"""
    words = st.split()
    if len(words) > 4 and words[0] == "rotating:" and words[1] == "block":
        return words[2] == words[4]
    return False


def rotate(env, pid, lower, key, fio_args=None, fio_time=0, integ=False):
    """Starts a rotation on the served VBD, optionally with fio; returns
    (seconds, fio IOPS or None, seconds of the online switch as polled
    (integrity images) or 0)."""
    run(f"{BIN}/tap-ctl", "pause", "-p", str(pid), env=env)
    run(f"{BIN}/vdkey", "reencrypt", lower, "--key-file", key, env=env)
    fio = None
    run(f"{BIN}/tap-ctl", "unpause", "-p", str(pid), "--next-key", env=env)
    t0 = time.monotonic()
    if fio_args:
        fio = subprocess.Popen(fio_args + [f"--runtime={fio_time:.1f}"], env=env,
                               stdout=subprocess.PIPE, text=True)
    t_moved = None
    while True:
        st = run(f"{BIN}/vdkey", "reencrypt", lower, "--status", env=env).stdout
        if "no volume-key rotation" in st:
            break
        if integ and t_moved is None and moved_all(st):
            t_moved = time.monotonic()
        time.sleep(0.05)
    t_end = time.monotonic()
    secs = t_end - t0
    iops = None
    if fio:
        out, _ = fio.communicate()
        iops = fio_iops(out)
    switch = t_end - t_moved if t_moved is not None else 0.0
    # the new key becomes the keyring's key
    run(f"{BIN}/vdkey", "reencrypt", lower, "--wait", env=env)
    return secs, iops, switch


def fio_iops(out):
    j = json.loads(out[out.index("{"):])
    job = j["jobs"][0]
    return job["read"]["iops"] + job["write"]["iops"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--runtime", type=float, default=10)
    ap.add_argument("--integrity", default="none", choices=["none", "hmac-sha256"])
    ap.add_argument("--bin", default=BIN)
    a = ap.parse_args()
    integ = a.integrity != "none"
    set_bin(a.bin)
    size = size_bytes(a.size)
    res = []
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory(dir=a.dir, prefix="reencbench.") as d:
            env = dict(os.environ, TAPDISK_RUNDIR=os.path.join(d, "run"),
                       TDCRYPT_STATE_DIR=os.path.join(d, "state"))
            os.makedirs(env["TAPDISK_RUNDIR"])
            img, key, sock = (os.path.join(d, n) for n in ("disk.img", "pass", "nbd.sock"))
            lower = "aio:" + img
            with open(img, "wb") as f:
                # integrity: room for the tags, journal and tree after the data
                f.truncate(size + (1 << 20) + (size // 64 + (16 << 20) if integ else 0))
            with open(key, "w") as f:
                f.write("bench passphrase")
            run(f"{BIN}/vdkey", "format", lower, "--key-file", key, "--integrity", a.integrity,
                "--pbkdf", "pbkdf2", "--pbkdf-iterations", "1000", env=env)
            run(f"{BIN}/vdkey", "load", lower, "--key-file", key, env=env)
            td = subprocess.Popen([f"{BIN}/tapdisk", "serve", "crypt:" + lower, "--socket", sock],
                                  env=env, stderr=subprocess.DEVNULL)
            try:
                for _ in range(200):
                    if os.path.exists(sock):
                        break
                    time.sleep(0.05)
                uri = f"nbd+unix:///?socket={sock}"
                base = ["fio", "--name=g", "--ioengine=nbd", f"--uri={uri}",
                        "--output-format=json"]
                run(*base, "--rw=write", "--bs=1M", "--iodepth=8", f"--size={size}", env=env)
                idle, _, sw_idle = rotate(env, td.pid, lower, key, integ=integ)
                job = base + ["--rw=randrw", "--rwmixread=70", "--bs=4k", "--iodepth=16",
                              "--time_based", "--size=" + str(size)]
                iops_base = fio_iops(run(*job, f"--runtime={a.runtime}", env=env).stdout)
                loaded, iops_rot, _ = rotate(env, td.pid, lower, key, job, 0.8 * idle,
                                             integ=integ)
            finally:
                td.terminate()
                td.wait()
                subprocess.run([f"{BIN}/vdkey", "unload", lower], env=env,
                               capture_output=True)
        mib = size / (1 << 20)
        row = {"rate_idle": mib / idle, "rate_loaded": mib / loaded,
               "iops_base": iops_base, "iops_rot": iops_rot, "switch": sw_idle}
        res.append(row)
        print(f"round {r + 1}: rotation {row['rate_idle']:.1f} MiB/s idle, "
              f"{row['rate_loaded']:.1f} MiB/s under guest load; guest 4k randrw "
              f"{iops_base:.0f} IOPS without, {iops_rot:.0f} IOPS during the rotation"
              + (f"; online switch {sw_idle:.2f} s" if integ else ""),
              flush=True)
    med = {k: statistics.median(x[k] for x in res) for k in res[0]}
    print(f"median of {a.rounds} ({a.size}): rotation {med['rate_idle']:.1f} MiB/s idle, "
          f"{med['rate_loaded']:.1f} MiB/s under load; guest {med['iops_base']:.0f} -> "
          f"{med['iops_rot']:.0f} IOPS ({100 * med['iops_rot'] / med['iops_base']:.0f} %)"
          + (f"; switch {med['switch']:.2f} s" if integ else "") + f" [integrity {a.integrity}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
