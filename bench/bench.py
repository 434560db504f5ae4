#!/usr/bin/env python3
"""Benchmark our tapdisk chains against qemu-nbd, in the same run.

fio's nbd engine drives every server over a Unix socket, with the same
image size and the same workloads; the report gives figures and
ours/peer ratios, as a table, as JSON and (with --png) as a bar chart.

    bench/run.sh [--pairs aio,crypt-aio,...] [--runtime 10] [--repeat N] [--json out.json] [--png out.png]
    bench/run.sh --png-only out.json --png out.png    # the chart of a saved run

The chart needs gnuplot (apt-get install gnuplot-nox): without it --png
fails at once, before anything runs.

Pairs (ours vs peer):
  aio        aio:RAW              vs qemu-nbd -f raw
  qcow       qcow2:IMG            vs qemu-nbd -f qcow2
  crypt-aio  crypt:aio:RAW (XTS + MACs)    vs qemu-nbd LUKS qcow2
  crypt-aio-noint crypt:aio:RAW, --integrity none (XTS only) vs qemu-nbd LUKS qcow2
  crypt-qcow crypt:qcow2:IMG (XTS + MACs) vs qemu-nbd LUKS qcow2 (and plain qcow2)
  vmdk       vmdk:IMG (monolithicSparse) vs qemu-nbd -f vmdk
  ram        ram:NAME,size=SIZE   vs qemu-nbd -f raw on a file in /dev/shm
  crypt-ram  crypt:ram:NAME,size=SIZE (XTS + MACs in shared memory) vs the same qemu-nbd
  vhd        vhd:IMG (dynamic VHD) vs qemu-nbd -f vpc
  crypt-vhd  crypt:vhd:IMG (XTS + MACs) vs qemu-nbd LUKS qcow2 (and -f vpc)
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(ROOT, BUILD, "bin")
PASS = "bench-passphrase-not-secret"

WORKLOADS = [
    # name, rw, bs, iodepth, extra
    ("seq-write-1M-qd16", "write", "1M", 16, []),
    ("seq-read-1M-qd16", "read", "1M", 16, []),
    ("rand-write-4k-qd32", "randwrite", "4k", 32, []),
    ("rand-read-4k-qd32", "randread", "4k", 32, []),
    ("rand-read-4k-qd1", "randread", "4k", 1, []),
    ("rand-rw70-4k-qd32", "randrw", "4k", 32, ["--rwmixread=70"]),
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def wait_socket(path, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError("server exited early: %s" % proc.args)
        time.sleep(0.05)
    raise RuntimeError("socket %s did not appear" % path)


class Server:
    def __init__(self, name, argv, sock, env=None):
        self.name, self.argv, self.sock, self.env = name, argv, sock, env
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.sock + ".log", "a"), env=self.env)
        wait_socket(self.sock, self.proc)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            return None


def fio(sock, wl, size, runtime):
    name, rw, bs, qd, extra = wl
    uri = "nbd+unix:///?socket=" + sock
    cmd = ["fio", "--name=" + name, "--ioengine=nbd", "--uri=" + uri, "--rw=" + rw,
           "--bs=" + bs, "--iodepth=%d" % qd, "--size=" + size, "--output-format=json",
           "--time_based", "--runtime=%d" % runtime, "--ramp_time=1",
           "--randrepeat=0", "--norandommap"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out[out.index("{"):])
    job = j["jobs"][0]
    res = {}
    for d in ("read", "write"):
        io = job[d]
        if io["io_bytes"] == 0:
            continue
        res[d + "_mibs"] = io["bw_bytes"] / 1048576.0
        res[d + "_iops"] = io["iops"]
        lat = io.get("clat_ns", {}).get("percentile", {})
        if lat:
            res[d + "_p50_us"] = lat.get("50.000000", 0) / 1000.0
            res[d + "_p99_us"] = lat.get("99.000000", 0) / 1000.0
    return res


def headline(name, r):
    """The one figure a workload is judged by."""
    if name.startswith("seq-write"):
        return r.get("write_mibs", 0), "MiB/s"
    if name.startswith("seq-read"):
        return r.get("read_mibs", 0), "MiB/s"
    if name.endswith("qd1"):
        return r.get("read_p99_us", 0), "p99 us"
    if "rw70" in name:
        return r.get("read_iops", 0) + r.get("write_iops", 0), "IOPS"
    if "write" in name:
        return r.get("write_iops", 0), "IOPS"
    return r.get("read_iops", 0), "IOPS"


def make_servers(kind, d, size_bytes):
    """Returns a Server for one configuration name, preparing its image."""
    env = dict(os.environ)
    env["TAPDISK_RUNDIR"] = os.path.join(d, "run")
    env["TDCRYPT_STATE_DIR"] = os.path.join(d, "state")
    os.makedirs(env["TAPDISK_RUNDIR"], exist_ok=True)
    sock = os.path.join(d, kind + ".sock")
    raw = os.path.join(d, kind + ".raw")
    q = os.path.join(d, kind + ".qcow2")
    qn = ["qemu-nbd", "-t", "-k", sock, "--cache=none", "--aio=native", "--discard=unmap"]
    if kind == "qemu-raw":
        run(["truncate", "-s", str(size_bytes), raw])
        return Server(kind, qn + ["-f", "raw", raw], sock)
    if kind == "qemu-qcow2":
        run(["qemu-img", "create", "-q", "-f", "qcow2", q, str(size_bytes)])
        return Server(kind, qn + ["-f", "qcow2", q], sock)
    vm = os.path.join(d, kind + ".vmdk")
    if kind == "qemu-vmdk":
        run(["qemu-img", "create", "-q", "-f", "vmdk", vm, str(size_bytes)])
        return Server(kind, qn + ["-f", "vmdk", vm], sock)
    if kind == "qemu-luks":
        # qemu-img times its PBKDF2; with a tiny iter-time it sometimes
        # fails ("Unable to get accurate CPU usage"): retry with more
        for it in (10, 50, 200, 1000):
            r = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "--object",
                                "secret,id=s0,data=" + PASS, "-o",
                                "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=%d" % it,
                                q, str(size_bytes)], capture_output=True)
            if r.returncode == 0:
                break
        else:
            raise RuntimeError("qemu-img cannot create the LUKS image: %s" % r.stderr)
        return Server(kind, qn + ["--object", "secret,id=s0,data=" + PASS, "--image-opts",
                                  "driver=qcow2,file.filename=%s,encrypt.key-secret=s0" % q],
                      sock)
    vhd = os.path.join(d, kind + ".vhd")
    vpc = ["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", vhd]
    if kind == "qemu-vpc":
        run(vpc + [str(size_bytes)])
        return Server(kind, qn + ["-f", "vpc", vhd], sock)
    if kind == "qemu-shm":
        # tmpfs has no O_DIRECT: the page cache is the disk
        shm = "/dev/shm/tdbench-%d.raw" % os.getpid()
        SHM_FILES.append(shm)
        run(["truncate", "-s", str(size_bytes), shm])
        return Server(kind, ["qemu-nbd", "-t", "-k", sock, "--cache=writeback", "--aio=threads",
                             "--discard=unmap", "-f", "raw", shm], sock)
    tapdisk = os.path.join(BIN, "tapdisk")
    if kind == "ram":
        # named, not ram:SIZE: bench restarts the server for every workload,
        # and a fresh memfd would serve its reads from holes (the zero page)
        name = "tdbench-%d-plain" % os.getpid()
        SHM_FILES.append("/dev/shm/tdcrypt-" + name)
        spec = "ram:%s,size=%d" % (name, (size_bytes + 4095) // 4096 * 4096)
    elif kind == "vhd":
        run(vpc + [str(size_bytes)])
        spec = "vhd:" + vhd
    elif kind == "aio":
        run(["truncate", "-s", str(size_bytes), raw])
        spec = "aio:" + raw
    elif kind == "qcow":
        run(["qemu-img", "create", "-q", "-f", "qcow2", q, str(size_bytes)])
        spec = "qcow2:" + q
    elif kind == "vmdk":
        run(["qemu-img", "create", "-q", "-f", "vmdk", vm, str(size_bytes)])
        spec = "vmdk:" + vm
    elif kind in ("crypt-aio", "crypt-qcow", "crypt-aio-noint", "crypt-aio-v1", "crypt-qcow-v1",
                  "crypt-ram", "crypt-vhd"):
        vdkey = os.path.join(BIN, "vdkey")
        keyfile = os.path.join(d, "key")
        with open(keyfile, "w") as f:
            f.write(PASS)
        fopts = []
        if kind.endswith("-v1"):
            # integrity layout version 1: the same MACs and journal, no
            # freshness tree (what the tree costs is the difference)
            fopts = ["--integrity-version", "1"]
        if kind == "crypt-ram":
            # a named RAM disk outlives each tapdisk (bench restarts the
            # server per workload), with room for the crypt metadata
            name = "tdbench-%d" % os.getpid()
            SHM_FILES.append("/dev/shm/tdcrypt-" + name)
            lower = "ram:%s,size=%d" % (
                name, (size_bytes + size_bytes // 32 + (8 << 20) + 4095) // 4096 * 4096)
        elif kind in ("crypt-aio", "crypt-aio-noint", "crypt-aio-v1"):
            # room for the crypt header and the integrity metadata
            run(["truncate", "-s", str(size_bytes + size_bytes // 32 + (8 << 20)), raw])
            lower = "aio:" + raw
        elif kind == "crypt-vhd":
            run(vpc + [str(size_bytes + size_bytes // 32 + (8 << 20))])
            lower = "vhd:" + vhd
        else:
            run(["qemu-img", "create", "-q", "-f", "qcow2", q,
                 str(size_bytes + size_bytes // 32 + (8 << 20))])
            lower = "qcow2:" + q
        integ = "none" if kind.endswith("noint") else "hmac-sha256"
        run([vdkey, "format", lower, "--key-file", keyfile, "--pbkdf", "pbkdf2",
             "--pbkdf-iterations", "1000", "--integrity", integ] + fopts, env=env,
            stdout=subprocess.DEVNULL)
        run([vdkey, "load", lower, "--key-file", keyfile], env=env, stdout=subprocess.DEVNULL)
        spec = "crypt:" + lower
    else:
        raise ValueError(kind)
    return Server(kind, [tapdisk, "serve", spec, "--socket", sock], sock, env)


PAIRS = {
    "aio": ("aio", ["qemu-raw"]),
    "qcow": ("qcow", ["qemu-qcow2"]),
    "crypt-aio": ("crypt-aio", ["qemu-luks"]),
    "crypt-aio-noint": ("crypt-aio-noint", ["qemu-luks"]),
    "crypt-qcow": ("crypt-qcow", ["qemu-luks", "qemu-qcow2"]),
    # the freshness tree's cost: the same chain with and without it
    "tree-aio": ("crypt-aio", ["crypt-aio-v1"]),
    "tree-qcow": ("crypt-qcow", ["crypt-qcow-v1"]),
    "vmdk": ("vmdk", ["qemu-vmdk"]),
    # RAM disks: no disk under either side, so the servers themselves are compared
    "ram": ("ram", ["qemu-shm"]),
    "crypt-ram": ("crypt-ram", ["qemu-shm"]),
    "vhd": ("vhd", ["qemu-vpc"]),
    "crypt-vhd": ("crypt-vhd", ["qemu-luks", "qemu-vpc"]),
}

# what a run leaves in /dev/shm (removed at the end, whatever happens)
SHM_FILES = []


def gnuplot_or_exit():
    """The gnuplot program; without it, a message and exit status 2."""
    g = shutil.which("gnuplot")
    if not g:
        sys.exit("bench: --png needs gnuplot, which is not installed (apt-get install "
                 "gnuplot-nox); the table and --json hold the same figures")
    return g


def gp_str(s):
    """A gnuplot string literal (single quotes, doubled inside)."""
    return "'" + s.replace("'", "''") + "'"


def draw_png(results, png):
    """A bar chart of the ours/peer ratios of results (as --json writes
    them), each bar labelled with its ratio and both absolute figures."""
    gnuplot = gnuplot_or_exit()
    ratios = results.get("ratios", [])
    if not ratios:
        sys.exit("bench: no ratios to draw (run with --pairs, or a JSON from a run)")
    dat = png + ".dat"
    with open(dat, "w") as f:
        for r in ratios:
            label = "%s vs %s\\n%s" % (r["ours"], r["peer"], r["workload"])
            figures = "%.2f\\n%s / %s %s" % (r["ratio"], fmt(r["ours_value"]),
                                             fmt(r["peer_value"]), r["unit"])
            f.write('"%s" %.4f "%s"\n' % (label, r["ratio"], figures))
    top = max(r["ratio"] for r in ratios)
    terms = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True)
    term = "pngcairo" if "pngcairo" in terms.stdout + terms.stderr else "png"
    title = "tdcrypt vs its peers: ours / peer (above 1: ours is faster)\\n%s, %s CPUs, %s image, %s s per job" % (
        results.get("machine", "?"), results.get("cpus", "?"), results.get("size", "?"),
        results.get("runtime", "?"))
    script = "\n".join([
        "set terminal %s size %d,720%s" % (term, max(900, 110 * len(ratios) + 200),
                                           " font 'sans,10'" if term == "pngcairo" else ""),
        "set output %s" % gp_str(png),
        'set title "%s"' % title,
        "set style fill solid 0.6 border -1",
        "set boxwidth 0.6",
        "set yrange [0:%.3f]" % (max(1.2, top) * 1.3),
        "set ylabel 'ratio ours / peer (p99 latency: peer / ours)'",
        "set xtics rotate by -30 left",
        "set grid ytics",
        "set bmargin 9",
        "set key top right",
        "plot %s using 0:2:xtic(1) with boxes lc rgb '#4a7ab5' title 'ours / peer', "
        "'' using 0:2:3 with labels offset 0,1.6 notitle, "
        "1 with lines lw 2 lc rgb '#b03030' title 'parity'" % gp_str(dat),
    ])
    try:
        r = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
        if r.returncode != 0 or not os.path.exists(png):
            sys.exit("bench: gnuplot failed: %s" % r.stderr.strip())
    finally:
        os.unlink(dat)
    print("chart: %s" % png)


def fmt(v):
    return "%.0f" % v if v >= 100 else "%.1f" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="aio", help="comma list of: " + ", ".join(PAIRS))
    ap.add_argument("--size", default="1G", help="image size (default 1G)")
    ap.add_argument("--io-size", default="768M",
                    help="the region every job works in (sequential jobs cycle over it)")
    ap.add_argument("--runtime", type=int, default=10, help="seconds per job, after a 1 s ramp")
    ap.add_argument("--workloads", default="", help="comma list (default all)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every workload N times, configs in turn each time, and report "
                         "the median run (for noisy machines; default 1)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--png", help="draw a bar chart of the ratios here (needs gnuplot)")
    ap.add_argument("--png-only", metavar="JSON",
                    help="run nothing: draw --png from the results a run saved with --json")
    ap.add_argument("--dir", help="where images go (default a temp dir under /var/tmp)")
    a = ap.parse_args()
    if a.png:
        gnuplot_or_exit()  # before the bench runs, not after
    if a.png_only:
        if not a.png:
            ap.error("--png-only needs --png FILE")
        with open(a.png_only) as f:
            draw_png(json.load(f), a.png)
        return

    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size_bytes = int(a.size[:-1]) * mult[a.size[-1]] if a.size[-1] in mult else int(a.size)
    wls = [w for w in WORKLOADS if not a.workloads or w[0] in a.workloads.split(",")]
    d = a.dir or tempfile.mkdtemp(prefix="tdbench.", dir="/var/tmp")
    results = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "size": a.size,
               "runtime": a.runtime, "command": " ".join(sys.argv), "configs": {},
               "ratios": []}
    kinds = []
    for p in a.pairs.split(","):
        ours, peers = PAIRS[p]
        for k in [ours] + peers:
            if k not in kinds:
                kinds.append(k)
    try:
        servers = {k: make_servers(k, d, size_bytes) for k in kinds}
        for k in kinds:
            results["configs"][k] = {}
        # per workload, every config back to back, so drift hits all alike;
        # with --repeat, the configs take turns N times and the median run counts
        for wl in wls:
            runs = {k: [] for k in kinds}
            for _ in range(max(1, a.repeat)):
                for k in kinds:
                    s = servers[k]
                    s.start()
                    try:
                        if wl[1] in ("read", "randread", "randrw") and not getattr(s, "filled", 0):
                            fio(s.sock, WORKLOADS[0], a.io_size, a.runtime)  # fill first
                        s.filled = 1
                        r = fio(s.sock, wl, a.io_size, a.runtime)
                        r["peak_rss_kib"] = s.rss_kib()
                    finally:
                        s.stop()
                    runs[k].append(r)
                    v, unit = headline(wl[0], r)
                    print("  %-12s %-20s %10.1f %s" % (k, wl[0], v, unit), flush=True)
            for k in kinds:
                ordered = sorted(runs[k], key=lambda r: headline(wl[0], r)[0])
                med = dict(ordered[len(ordered) // 2])
                med["runs"] = [headline(wl[0], r)[0] for r in runs[k]]
                med["peak_rss_kib"] = max(r.get("peak_rss_kib") or 0 for r in runs[k])
                results["configs"][k][wl[0]] = med
        for p in a.pairs.split(","):
            ours, peers = PAIRS[p]
            for peer in peers:
                for wl in wls:
                    vo, unit = headline(wl[0], results["configs"][ours][wl[0]])
                    vp, _ = headline(wl[0], results["configs"][peer][wl[0]])
                    if unit == "p99 us":
                        ratio = vp / vo if vo else 0  # lower is better: peer/ours
                    else:
                        ratio = vo / vp if vp else 0
                    results["ratios"].append({"ours": ours, "peer": peer, "workload": wl[0],
                                              "ours_value": vo, "peer_value": vp,
                                              "unit": unit, "ratio": ratio})
    finally:
        for s in locals().get("servers", {}).values():
            s.stop()
        if not a.dir:
            shutil.rmtree(d, ignore_errors=True)
        for f in SHM_FILES:
            if os.path.exists(f):
                os.unlink(f)

    print()
    print("| ours | peer | workload | ours | peer | unit | ratio |")
    print("| --- | --- | --- | ---: | ---: | --- | ---: |")
    for r in results["ratios"]:
        print("| %s | %s | %s | %.1f | %.1f | %s | %.2f |" % (
            r["ours"], r["peer"], r["workload"], r["ours_value"], r["peer_value"], r["unit"],
            r["ratio"]))
    print("\n(ratio = ours/peer; for p99 latency, peer/ours: above 1 means we are faster)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    if a.png:
        draw_png(results, a.png)

if __name__ == "__main__":
    main()
