#!/usr/bin/env python3
"""crypt:rbd against qemu-nbd on librbd's own LUKS2 encryption, same cluster, same run.

    bench/rbd.sh [--size 2G] [--io-size 1G] [--runtime 10] [--ceiling] [--workloads ...] [--json out.json]

Starts the test cluster of tests/lib/ceph-cluster.sh (single node,
memstore OSD sized for both images), creates two RBD images of --size:
  crypt-rbd  tapdisk serve crypt:rbd:rbd/img1   (XTS + HMAC-SHA256 MACs + journal)
  qemu-rbd-luks2  qemu-nbd --image-opts driver=rbd,pool=rbd,image=img2,
                  encrypt.format=luks2 (librbd's LUKS2: XTS, no integrity),
                  --cache=none (rbd_cache off, like our driver)
With --ceiling, two more unencrypted images are served the same way
(rbd-plain: tapdisk serve rbd:rbd/img3; qemu-rbd: qemu-nbd driver=rbd)
and reported as multiples of the LUKS2 peer: what the cluster gives with
no encryption at all. It runs bench.py's fio workloads (fio nbd engine,
Unix sockets) on every server, back to back per workload. Prints figures
and ours/peer ratios; --json writes them. The cluster is killed at exit.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = bench.ROOT
TARGETS = {"seq-write-1M-qd16": 1.2, "seq-read-1M-qd16": 1.2,
           "rand-write-4k-qd32": 2.0, "rand-read-4k-qd32": 2.0}


def start_cluster(d, osd_bytes):
    script = ('. "%s/tests/lib/ceph-cluster.sh" && CEPH_OSD_BYTES=%d ceph_cluster_start "%s" '
              '>&2 && echo "$CEPH_CONF" && echo $_ceph_pids' % (ROOT, osd_bytes, d))
    out = subprocess.run(["bash", "-c", script], check=True, stdout=subprocess.PIPE,
                         text=True).stdout.split("\n")
    return out[0], [int(p) for p in out[1].split()]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2G", help="image size (default 2G)")
    ap.add_argument("--io-size", default="1G", help="the region every job works in")
    ap.add_argument("--runtime", type=int, default=10, help="seconds per job, after a 1 s ramp")
    ap.add_argument("--workloads", default=",".join(TARGETS), help="comma list (default: "
                    "the four with targets; bench.py names)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--dir", help="work dir (default a temp dir under /var/tmp)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also serve two unencrypted images (rbd:rbd/img3 by our tapdisk, "
                    "img4 by qemu-nbd driver=rbd): what the cluster allows without any "
                    "encryption, against which the targets can be read")
    ap.add_argument("--integrity", default="hmac-sha256", choices=["hmac-sha256", "none"],
                    help="our image's integrity (none: XTS only, to see what the MACs and "
                    "their journal cost; the targets are for hmac-sha256)")
    a = ap.parse_args()

    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = int(a.size[:-1]) * mult[a.size[-1]] if a.size[-1] in mult else int(a.size)
    wls = [w for w in bench.WORKLOADS if w[0] in a.workloads.split(",")]
    d = a.dir or tempfile.mkdtemp(prefix="tdbench-rbd.", dir="/var/tmp")
    pids = []
    servers = {}
    results = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "size": a.size,
               "runtime": a.runtime, "integrity": a.integrity,
               "command": " ".join(["bench/rbd.sh"] + sys.argv[1:]),
               "cluster": "single node, 1 memstore OSD, size 1, 127.0.0.1",
               "configs": {}, "ratios": []}
    try:
        # both images, the integrity metadata, and headroom: a full OSD blocks writes
        conf, pids = start_cluster(os.path.join(d, "ceph"),
                                   (5 if a.ceiling else 3) * size + (2 << 30))
        env = dict(os.environ)
        env["CEPH_CONF"] = conf
        env["TAPDISK_RUNDIR"] = os.path.join(d, "run")
        env["TDCRYPT_STATE_DIR"] = os.path.join(d, "state")
        os.makedirs(env["TAPDISK_RUNDIR"], exist_ok=True)
        keyfile = os.path.join(d, "key")
        with open(keyfile, "w") as f:
            f.write(bench.PASS)
        # crypt:rbd: room for the crypt header and the integrity metadata
        lower = size + size // 32 + (8 << 20)
        bench.run(["rbd", "create", "--size", "%dM" % (lower >> 20), "rbd/img1"], env=env)
        vdkey = os.path.join(bench.BIN, "vdkey")
        bench.run([vdkey, "format", "rbd:rbd/img1", "--key-file", keyfile, "--pbkdf", "pbkdf2",
                   "--pbkdf-iterations", "1000", "--integrity", a.integrity], env=env,
                  stdout=subprocess.DEVNULL)
        bench.run([vdkey, "load", "rbd:rbd/img1", "--key-file", keyfile], env=env,
                  stdout=subprocess.DEVNULL)
        sock1 = os.path.join(d, "crypt-rbd.sock")
        servers["crypt-rbd"] = bench.Server(
            "crypt-rbd", [os.path.join(bench.BIN, "tapdisk"), "serve", "crypt:rbd:rbd/img1",
                          "--socket", sock1], sock1, env)
        # librbd LUKS2: the header takes the first 16 MiB of the image
        bench.run(["rbd", "create", "--size", "%dM" % ((size >> 20) + 16), "rbd/img2"], env=env)
        bench.run(["rbd", "encryption", "format", "rbd/img2", "luks2", keyfile], env=env)
        sock2 = os.path.join(d, "qemu-rbd-luks2.sock")
        servers["qemu-rbd-luks2"] = bench.Server(
            "qemu-rbd-luks2",
            ["qemu-nbd", "-t", "-k", sock2, "--cache=none", "--discard=unmap",
             "--object", "secret,id=sec0,data=" + bench.PASS, "--image-opts",
             "driver=rbd,pool=rbd,image=img2,conf=%s,encrypt.format=luks2,"
             "encrypt.key-secret=sec0" % conf], sock2, env)
        kinds = ["crypt-rbd", "qemu-rbd-luks2"]
        if a.ceiling:
            # no encryption at all: our driver alone, and qemu's librbd driver alone
            for img in ("img3", "img4"):
                bench.run(["rbd", "create", "--size", "%dM" % (size >> 20), "rbd/" + img],
                          env=env)
            sock3 = os.path.join(d, "rbd-plain.sock")
            servers["rbd-plain"] = bench.Server(
                "rbd-plain", [os.path.join(bench.BIN, "tapdisk"), "serve", "rbd:rbd/img3",
                              "--socket", sock3], sock3, env)
            sock4 = os.path.join(d, "qemu-rbd.sock")
            servers["qemu-rbd"] = bench.Server(
                "qemu-rbd", ["qemu-nbd", "-t", "-k", sock4, "--cache=none", "--discard=unmap",
                             "--image-opts", "driver=rbd,pool=rbd,image=img4,conf=%s" % conf],
                sock4, env)
            kinds += ["rbd-plain", "qemu-rbd"]
        for k in kinds:
            results["configs"][k] = {}
        for wl in wls:
            for k in kinds:
                s = servers[k]
                s.start()
                try:
                    if wl[1] in ("read", "randread", "randrw") and not getattr(s, "filled", 0):
                        bench.fio(s.sock, bench.WORKLOADS[0], a.io_size, a.runtime)
                    s.filled = 1
                    r = bench.fio(s.sock, wl, a.io_size, a.runtime)
                    r["peak_rss_kib"] = s.rss_kib()
                finally:
                    s.stop()
                results["configs"][k][wl[0]] = r
                v, unit = bench.headline(wl[0], r)
                print("  %-15s %-20s %10.1f %s" % (k, wl[0], v, unit), flush=True)
        def ratio_row(ours, wl, target):
            vo, unit = bench.headline(wl[0], results["configs"][ours][wl[0]])
            vp, _ = bench.headline(wl[0], results["configs"]["qemu-rbd-luks2"][wl[0]])
            ratio = (vp / vo if vo else 0) if unit == "p99 us" else (vo / vp if vp else 0)
            return {"ours": ours, "peer": "qemu-rbd-luks2", "workload": wl[0],
                    "ours_value": vo, "peer_value": vp, "unit": unit, "ratio": ratio,
                    "target": target}

        for wl in wls:
            results["ratios"].append(ratio_row("crypt-rbd", wl, TARGETS.get(wl[0])))
        if a.ceiling:
            # what the unencrypted cluster path gives, as a multiple of the peer: a target
            # above this is above what any encryption layer could reach here
            for ours in ("rbd-plain", "qemu-rbd"):
                for wl in wls:
                    results["ratios"].append(ratio_row(ours, wl, None))
    finally:
        for s in servers.values():
            s.stop()
        for p in pids:
            try:
                os.kill(p, 9)
            except OSError:
                pass
        if not a.dir:
            shutil.rmtree(d, ignore_errors=True)

    print()
    print("| ours | peer | workload | ours | peer | unit | ratio | target |")
    print("| --- | --- | --- | ---: | ---: | --- | ---: | ---: |")
    for r in results["ratios"]:
        t = r["target"]
        print("| %s | %s | %s | %.1f | %.1f | %s | %.2f | %s |" % (
            r["ours"], r["peer"], r["workload"], r["ours_value"], r["peer_value"], r["unit"],
            r["ratio"], ("%.1f %s" % (t, "met" if r["ratio"] >= t else "NOT met")) if t else "-"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
