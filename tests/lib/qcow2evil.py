#!/usr/bin/env python3
"""Writes corrupt and hostile qcow2 images, one case per file (Python 3
stdlib only; the layout follows QEMU's docs/interop/qcow2.txt).

    qcow2evil.py DIR

Prints a manifest, one line per case:  NAME|MODE|EXPECT|IMAGE
  MODE refuse    `tapdisk serve qcow2:IMAGE` must exit non-zero with one
                 line containing EXPECT, and change no file
  MODE ioerror   the image opens; reading guest offset EXPECT fails with
                 EIO while guest cluster 0 reads as 0xab
  MODE rwerror   the image opens; writing at guest offset EXPECT fails
                 with EIO and writes nothing anywhere
  MODE readonly  refused for writing, served with --readonly

The base image: 64 KiB clusters, 16 MiB, header | refcount table |
refcount block | L1 | L2 | data (guest cluster 0, all 0xab).
"""
import os
import struct
import sys

CS = 65536
MAGIC = 0x514649FB


def header(cs_bits=16, size=16 << 20, l1_size=1, l1_off=3 * CS, rt_off=CS, rt_clusters=1,
           version=3, incompat=0, crypt=0, refcount_order=4, hdr_len=112,
           backing=None, backing_fmt=None, nb_snapshots=0, snap_off=0):
    h = bytearray(CS)
    struct.pack_into(">IIQIIQIIQQIIQ", h, 0, MAGIC, version, 0, 0, cs_bits, size, crypt,
                     l1_size, l1_off, rt_off, rt_clusters, nb_snapshots, snap_off)
    if version >= 3:
        struct.pack_into(">QQQII", h, 72, incompat, 0, 0, refcount_order, hdr_len)
        off = hdr_len
    else:
        off = 72
    if backing_fmt is not None:
        fmt = backing_fmt.encode()
        struct.pack_into(">II", h, off, 0xE2792ACA, len(fmt))
        h[off + 8:off + 8 + len(fmt)] = fmt
        off += 8 + (len(fmt) + 7) // 8 * 8
    off += 8  # end of extensions
    if backing is not None:
        name = backing.encode()
        h[off:off + len(name)] = name
        struct.pack_into(">QI", h, 8, off, len(name))
    return h


def image(path, hdr=None, l1=None, l2=None, rt=None, data=b"\xab" * CS, truncate=None,
          **kw):
    """Writes the base image with optional replacements; returns path."""
    h = hdr if hdr is not None else header(**kw)
    reftable = bytearray(CS)
    struct.pack_into(">Q", reftable, 0, 2 * CS)
    if rt:
        for i, v in rt.items():
            struct.pack_into(">Q", reftable, 8 * i, v)
    refblock = bytearray(CS)
    for i in range(6):
        struct.pack_into(">H", refblock, 2 * i, 1)
    l1t = bytearray(CS)
    struct.pack_into(">Q", l1t, 0, (1 << 63) | 4 * CS)
    if l1:
        for i, v in l1.items():
            struct.pack_into(">Q", l1t, 8 * i, v)
    l2t = bytearray(CS)
    struct.pack_into(">Q", l2t, 0, (1 << 63) | 5 * CS)
    if l2:
        for i, v in l2.items():
            struct.pack_into(">Q", l2t, 8 * i, v)
    blob = bytes(h) + bytes(reftable) + bytes(refblock) + bytes(l1t) + bytes(l2t) + data
    if truncate is not None:
        blob = blob[:truncate]
    with open(path, "wb") as f:
        f.write(blob)
    return path


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    out = []

    def case(name, mode, expect, **kw):
        p = os.path.join(d, name + ".qcow2")
        image(p, **kw)
        out.append("%s|%s|%s|%s" % (name, mode, expect, p))
        return p

    # header fields
    case("bad-magic", "refuse", "bad magic",
         hdr=bytes(b"QFI\x00") + bytes(header()[4:]))
    case("version-4", "refuse", "version 4", version=4)
    case("cluster-bits-8", "refuse", "cluster_bits 8", cs_bits=8)
    case("cluster-bits-30", "refuse", "cluster_bits 30", cs_bits=30)
    case("l1-past-eof", "refuse", "L1 table offset", l1_off=1000 * CS)
    case("l1-unaligned", "refuse", "L1 table offset", l1_off=3 * CS + 512)
    case("l1-overlaps-header", "refuse", "overlaps", l1_off=0)
    case("l1-overlaps-reftable", "refuse", "overlaps", l1_off=CS)
    case("rt-unaligned", "refuse", "refcount table offset", rt_off=CS + 8)
    case("rt-past-eof", "refuse", "refcount table offset", rt_off=4000 * CS)
    case("rt-overlaps-l1", "refuse", "overlaps", rt_off=3 * CS)
    case("huge-l1", "refuse", "too large", l1_size=0x4000000)
    case("size-overflow", "refuse", "too large", size=1 << 63)
    case("l1-too-small", "refuse", "too small", size=1 << 40)
    case("crypt-aes", "refuse", "use the crypt layer above", crypt=1)
    case("crypt-luks", "refuse", "qcow2 encryption is not supported", crypt=2)
    case("unknown-incompat", "refuse", "incompatible feature bit 9", incompat=1 << 9)
    case("dirty-bit", "refuse", "qemu-img check -r all", incompat=1)
    case("corrupt-bit", "refuse", "marked corrupt", incompat=2)
    case("external-data-file", "refuse", "external data file", incompat=4)
    case("extended-l2", "refuse", "subclusters", incompat=16)
    case("refcount-order-7", "refuse", "refcount_order", refcount_order=7)
    case("header-length-bad", "refuse", "header_length", hdr_len=100)
    case("internal-snapshots", "refuse", "internal snapshots", nb_snapshots=1,
         snap_off=5 * CS)
    case("truncated-header", "refuse", "too short", truncate=40)
    case("truncated-tables", "refuse", "L1 table offset", truncate=CS + 100)
    case("v2-written", "readonly", "version 2", version=2)
    # extension area
    h = header()
    struct.pack_into(">II", h, 112, 0x12345678, 0xFFFFFF00)
    case("extension-overrun", "refuse", "overruns", hdr=h)
    # table entries
    case("l1-entry-past-eof", "refuse", "L1 entry 0", l1={0: (1 << 63) | 500 * CS})
    case("l1-entry-unaligned", "refuse", "L1 entry 0", l1={0: (1 << 63) | 4 * CS + 512})
    case("l1-entry-reserved", "refuse", "L1 entry 0", l1={0: (1 << 60) | 4 * CS})
    case("l1-entry-on-reftable", "refuse", "overlaps", l1={0: (1 << 63) | CS})
    case("rt-entry-past-eof", "refuse", "refcount table entry 0", rt={0: 900 * CS})
    case("rt-entry-unaligned", "refuse", "refcount table entry 1", rt={1: 2 * CS + 8})
    # backing files
    case("backing-proc-mem", "refuse", "/proc", backing="/proc/self/mem", backing_fmt="raw")
    case("backing-dev-zero", "refuse", "/dev", backing="/dev/zero", backing_fmt="raw")
    case("backing-sys", "refuse", "/sys", backing="/sys/kernel/notes")
    fifo = os.path.join(d, "fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    case("backing-fifo", "refuse", "FIFO", backing="fifo", backing_fmt="raw")
    case("backing-missing", "refuse", "does not exist", backing="nowhere.qcow2")
    case("backing-format-vmdk", "refuse", "format 'vmdk' is not supported",
         backing="x.vmdk", backing_fmt="vmdk")
    case("backing-json", "refuse", "json", backing='json:{"file.filename":"/etc/passwd"}')
    case("backing-self", "refuse", "loop", backing="backing-self.qcow2", backing_fmt="qcow2")
    image(os.path.join(d, "loop-b.qcow2"), backing="loop-a.qcow2", backing_fmt="qcow2")
    case("loop-a", "refuse", "loop", backing="loop-b.qcow2", backing_fmt="qcow2")
    h = header(backing="x" * 10)
    struct.pack_into(">I", h, 16, 2000)
    case("backing-name-too-long", "refuse", "length", hdr=h)
    # a chain deeper than 64
    for i in range(70, 0, -1):
        image(os.path.join(d, "deep-%d.qcow2" % i),
              backing=("deep-%d.qcow2" % (i + 1)) if i < 70 else None,
              backing_fmt="qcow2" if i < 70 else None)
    out.append("chain-too-deep|refuse|deeper than 64|%s" % os.path.join(d, "deep-1.qcow2"))
    # per-cluster problems: the image opens, the I/O fails
    case("compressed-cluster", "ioerror", str(1 * CS), l2={1: (1 << 62) | 5 * CS})
    case("l2-entry-past-eof", "ioerror", str(2 * CS), l2={2: (1 << 63) | 900 * CS})
    case("l2-entry-unaligned", "ioerror", str(3 * CS), l2={3: (1 << 63) | 5 * CS + 512})
    case("l2-entry-reserved", "ioerror", str(4 * CS), l2={4: (1 << 63) | (1 << 57) | 5 * CS})
    case("write-to-compressed", "rwerror", str(1 * CS), l2={1: (1 << 62) | 5 * CS})
    case("write-onto-reftable", "rwerror", str(6 * CS), l2={6: (1 << 63) | CS})
    case("write-onto-header", "rwerror", str(7 * CS), l2={7: 1 << 63})
    case("write-past-eof", "rwerror", str(8 * CS), l2={8: (1 << 63) | 700 * CS})
    print("\n".join(out))


if __name__ == "__main__":
    main()
