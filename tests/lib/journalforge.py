#!/usr/bin/env python3
"""journalforge.py: look at and tamper with the integrity journal and data
blocks of an image file, the way someone who can write the storage could
(tests/security/). No key is needed: the journal blocks are copied whole,
never forged.

    journalforge.py IMG LAYOUT_JSON list
        the journal blocks of the current epoch: position, index, records
        ("w BLOCK seq" for a write, "z BLOCK+COUNT seq" for a zero range)
        and "flush-point" when the block carries one
    journalforge.py IMG LAYOUT_JSON find-zero BLOCK
        position of the journal block whose zero range covers BLOCK
    journalforge.py IMG LAYOUT_JSON find-write BLOCK
        positions of the journal blocks with a write record of BLOCK
    journalforge.py IMG LAYOUT_JSON copy FROM TO
        copies the journal block at position FROM over the one at TO
    journalforge.py IMG LAYOUT_JSON swap A B
        swaps the journal blocks at positions A and B
    journalforge.py IMG LAYOUT_JSON put-data SRC BLOCK [FROM TO]
        copies data block BLOCK from image SRC into IMG (bytes FROM..TO of
        the block only, when given: a torn write at 512-byte boundaries)
    journalforge.py IMG LAYOUT_JSON zero-data BLOCK
        overwrites data block BLOCK with zeros

LAYOUT_JSON is vdkey audit --json's "integrity_layout". The current epoch
is the higher one of the two superblocks (their MACs are not checked).
"""
import json
import struct
import sys

BS = 4096


def superblock_epoch(f, lay):
    best = None
    for slot in range(2):
        f.seek(lay["super_off"] + slot * BS)
        b = f.read(BS)
        if b[:8] == b"TDJSUPER":
            e = struct.unpack_from("<Q", b, 16)[0]
            best = e if best is None or e > best else best
    if best is None:
        sys.exit("journalforge: no superblock")
    return best


def blocks(f, lay):
    """(position, index, kind, records) of the current epoch's blocks."""
    epoch = superblock_epoch(f, lay)
    out = []
    for pos in range(lay["journal_blocks"]):
        f.seek(lay["journal_off"] + pos * BS)
        b = f.read(BS)
        if b[:8] != b"TDJRNL01" or struct.unpack_from("<Q", b, 8)[0] != epoch:
            continue
        index, n = struct.unpack_from("<QQ", b, 16)
        kind = struct.unpack_from("<I", b, 48)[0]
        recs = []
        for i in range(n if kind in (0, 1) and n <= 100 else 0):
            blk, seq, count = struct.unpack_from("<QQQ", b, 64 + 40 * i)
            if seq >> 63:
                recs.append(("z", blk, count, seq & ~(1 << 63)))
            else:
                recs.append(("w", blk, 1, seq))
        out.append((pos, index, kind, recs))
    return out


def main():
    img, lay, cmd = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    with open(img, "r+b") as f:
        jb = blocks(f, lay)
        if cmd == "list":
            for pos, index, kind, recs in jb:
                what = " ".join("%s %d%s seq %d" % (t, b, "+%d" % c if t == "z" else "", s)
                                for t, b, c, s in recs)
                if kind == 1:
                    what = (what + " + " if what else "") + "flush-point"
                print("position %d index %d: %s" % (pos, index, what))
        elif cmd == "find-zero":
            blk = int(args[0])
            hits = [pos for pos, _, _, recs in jb
                    for t, b, c, _ in recs if t == "z" and b <= blk < b + c]
            if not hits:
                sys.exit("journalforge: no zero range covers block %d" % blk)
            print(hits[0])
        elif cmd == "find-write":
            blk = int(args[0])
            hits = sorted({pos for pos, _, _, recs in jb
                           for t, b, _, _ in recs if t == "w" and b == blk})
            if not hits:
                sys.exit("journalforge: no write record of block %d" % blk)
            print(" ".join(map(str, hits)))
        elif cmd in ("copy", "swap"):
            a, b = int(args[0]), int(args[1])
            f.seek(lay["journal_off"] + a * BS)
            ba = f.read(BS)
            f.seek(lay["journal_off"] + b * BS)
            bb = f.read(BS)
            f.seek(lay["journal_off"] + b * BS)
            f.write(ba)
            if cmd == "swap":
                f.seek(lay["journal_off"] + a * BS)
                f.write(bb)
        elif cmd == "put-data":
            src, blk = args[0], int(args[1])
            lo, hi = (int(args[2]), int(args[3])) if len(args) > 2 else (0, BS)
            off = lay["data_start"] + blk * BS
            with open(src, "rb") as s:
                s.seek(off + lo)
                data = s.read(hi - lo)
            f.seek(off + lo)
            f.write(data)
        elif cmd == "zero-data":
            f.seek(lay["data_start"] + int(args[0]) * BS)
            f.write(bytes(BS))
        else:
            sys.exit("journalforge: unknown command %s" % cmd)


main()
