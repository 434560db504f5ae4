#!/usr/bin/env python3
"""replayforge.py: build a single-block replay forgery from three copies of
an image (issue 9, "Must show" 1).

    replayforge.py SA SAB SABC OUT LAYOUT_JSON KIND

SA is the image after write A to block 0, SAB after A then B to block 0,
SABC after that plus a write C to a block far away. The forgery is SABC
with some bytes the A->B step changed put back to their SA values, never
touching a byte the B->C step changed too (the attacker keeps C's state).
KIND picks which of those bytes:

    all        every one of them: data, tag slots, tree slots, L2, journal
    data+tag   data block 0 and the tag-page slots
    tag        the tag-page slots only
    tree       the L1 tree-page slots only
    journal    data block 0 and the journal region only

Prints how many bytes it restored in each region; exits 2 if KIND
restores nothing (the test would prove nothing).
"""
import json
import sys

sa_p, sab_p, sabc_p, out_p, layout_json, kind = sys.argv[1:7]
lay = json.loads(layout_json)
BS = 4096
ds = lay["data_start"]
db = lay["data_blocks"]
super_off = lay["super_off"]
journal_off = lay["journal_off"]
tags_off = lay["tags_off"]
tree_off = lay["tree_off"]
end = tree_off + lay["tree_pages"] * BS
T = (db + 127) // 128
L = (T + 127) // 128


def region(off):
    if ds <= off < ds + BS:
        return "data0"
    if ds <= off < super_off:
        return "data"
    if super_off <= off < journal_off:
        return "super"
    if journal_off <= off < tags_off:
        return "journal"
    if tags_off <= off < tree_off:
        return "tag"
    if tree_off <= off < tree_off + 2 * L * BS:
        return "tree"
    if tree_off + 2 * L * BS <= off < end:
        return "l2"
    return "other"


want = {
    "all": {"data0", "data", "super", "journal", "tag", "tree", "l2", "other"},
    "data+tag": {"data0", "tag"},
    "tag": {"tag"},
    "tree": {"tree"},
    "journal": {"data0", "journal"},
}[kind]

CH = 1 << 20
counts = {}
with open(sa_p, "rb") as fa, open(sab_p, "rb") as fb, open(sabc_p, "rb") as fc, \
        open(out_p, "r+b") as fo:
    off = 0
    while True:
        a, b, c = fa.read(CH), fb.read(CH), fc.read(CH)
        if not c:
            break
        if a == b:
            off += len(c)
            continue
        out = bytearray(c)
        changed = False
        for i in range(min(len(a), len(b), len(c))):
            if a[i] != b[i] and b[i] == c[i]:
                r = region(off + i)
                if r in want:
                    out[i] = a[i]
                    counts[r] = counts.get(r, 0) + 1
                    changed = True
        if changed:
            fo.seek(off)
            fo.write(out)
        off += len(c)
print("restored:", " ".join("%s=%d" % kv for kv in sorted(counts.items())) or "nothing")
sys.exit(0 if counts else 2)
