#!/usr/bin/env python3
"""Independent check of an integrity image's MACs against two volume keys,
for tests/integration/t-reencrypt-integrity.sh: the live metadata --
superblock, freshness tree (root, L2, L1 pages), every non-zero tag-table
entry (checked against the data block on disk) and the journal blocks of
the live epoch -- verifies under GOODKEY's subkeys and nothing of it under
BADKEY's. Stale copies outside the live tree (the other superblock slot,
unused page slots, journal blocks of older epochs) are counted and
reported; with --strict any of them under BADKEY fails too.

Written from docs/FORMAT.md ("Keys derived from the volume key", "One
header copy", "Integrity metadata": "Block tags", "Tag table",
"Superblocks", "Freshness tree", "Journal blocks") with Python's hmac and
hashlib and the `cryptography` package's HKDF, not our code.

With --live (an image a tapdisk is serving, whose tag table and tree
lag behind the data): only the header and the superblocks -- the header
copy a reader picks carries GOODKEY's volume key digest and MAC, no
rotation record, and neither under BADKEY; the newest superblock
verifies under GOODKEY, and no superblock at least as new verifies under
BADKEY.

usage: integ_keycheck.py IMAGE GOODKEY BADKEY [--strict | --live]
GOODKEY/BADKEY: keyring payloads (64-byte volume key + 1 flag byte)."""
import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

B = 4096


def subkey(path, purpose):
    vk = open(path, "rb").read()[:64]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"tdcrypt v1 " + purpose).derive(vk)


def hm(key, *parts):
    h = hmac.new(key, digestmod=hashlib.sha256)
    for p in parts:
        h.update(p)
    return h.digest()


def u64(x):
    return struct.pack("<Q", x)


def header(f):
    best = None
    for off in (0, 65536):
        f.seek(off)
        c = f.read(16384)
        if c[:8] != b"TDCRYPT\0" or hashlib.sha256(c[:16352]).digest() != c[16352:16384]:
            continue
        seq = struct.unpack_from("<Q", c, 16)[0]
        if best is None or seq > best[0]:
            best = (seq, c)
    if best is None:
        sys.exit("no valid header copy")
    return best[1]


def vk_digest(path):
    return hm(subkey(path, b"digest"), b"tdcrypt v1 volume key digest")


def live_check(img, good, bad):
    """The header and the superblocks only (see the module's text)."""
    problems = []
    with open(img, "rb") as f:
        h = header(f)
        flags = struct.unpack_from("<Q", h, 40)[0]
        for name, key, want in (("good", good, True), ("bad", bad, False)):
            dig = hmac.compare_digest(h[160:192], vk_digest(key))
            mac = hmac.compare_digest(hm(subkey(key, b"header"), h[:16320]), h[16320:16352])
            if dig != want or mac != want:
                problems.append(f"header: digest {'matches' if dig else 'differs'}, MAC "
                                f"{'verifies' if mac else 'fails'} under the {name} key")
        if flags & 1 or h[640:648] != bytes(8):
            problems.append("header: a rotation record is still there")
        ip = h[256:512]
        super_off = struct.unpack_from("<Q", ip, 8 + 16)[0]
        best = {}
        for s in (0, 1):
            f.seek(super_off + s * B)
            blk = f.read(B)
            if blk[:8] != b"TDJSUPER":
                continue
            ep = struct.unpack_from("<Q", blk, 16)[0]
            for name, key in (("good", good), ("bad", bad)):
                if hmac.compare_digest(hm(subkey(key, b"mac"), blk[:4064]), blk[4064:4096]):
                    best[name] = max(best.get(name, -1), ep)
    if "good" not in best:
        problems.append("no superblock verifies under the good key")
    elif best.get("bad", -1) >= best["good"]:
        problems.append(f"the superblock of generation {best['bad']} verifies under the bad key")
    print(f"header seq {struct.unpack_from('<Q', h, 16)[0]}: live superblock generation "
          f"{best.get('good')} under the good key, newest under the bad key: {best.get('bad')}")
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


def main():
    args = [a for a in sys.argv[1:] if a not in ("--strict", "--live")]
    strict = "--strict" in sys.argv
    img, good, bad = args
    if "--live" in sys.argv:
        live_check(img, good, bad)
    with open(img, "rb") as f:
        h = header(f)
        uuid = h[24:40]
        ip = h[256:512]
        ver = ip[0]
        (data_start, data_blocks, super_off, journal_off, journal_blocks, tags_off,
         tags_pages, tree_off, tree_pages) = struct.unpack_from("<9Q", ip, 8)
        if ver != 2:
            sys.exit(f"integrity parameters version {ver}: this check wants version 2")
        L = (tags_pages + 127) // 128
        M = (L + 127) // 128
        keys = {n: (subkey(p, b"mac"), subkey(p, b"tree")) for n, p in (("good", good), ("bad", bad))}

        def rd(off, n=B):
            f.seek(off)
            return f.read(n)

        # superblocks
        supers = {}
        for s in (0, 1):
            blk = rd(super_off + s * B)
            if blk[:8] != b"TDJSUPER":
                continue
            for n, (km, _) in keys.items():
                if hmac.compare_digest(hm(km, blk[:4064]), blk[4064:4096]):
                    supers.setdefault(n, []).append(blk)
        if "good" not in supers:
            sys.exit("FAIL: no superblock verifies under the good key")
        live = max(supers["good"], key=lambda b: struct.unpack_from("<Q", b, 16)[0])
        epoch = struct.unpack_from("<Q", live, 16)[0]
        root = live[48:80]
        bad_live = 0
        stale_bad = len(supers.get("bad", []))
        problems = []

        def tree_hash(kt, tag, idx, page):
            if page == bytes(B):
                return bytes(32)
            return hm(kt, tag, uuid, u64(idx), page)

        kt_good, kt_bad = keys["good"][1], keys["bad"][1]
        km_good, km_bad = keys["good"][0], keys["bad"][0]
        l2 = rd(tree_off + B * (2 * L + (epoch % 2) * M), M * B)
        if not hmac.compare_digest(hm(kt_good, b"TDTR", uuid, u64(M), l2), root):
            problems.append("the tree root does not verify under the good key")
        if hmac.compare_digest(hm(kt_bad, b"TDTR", uuid, u64(M), l2), root):
            bad_live += 1
            problems.append("the tree root verifies under the bad key")
        tags_checked = 0
        for q in range(L):
            want = l2[32 * q:32 * q + 32]
            if want == bytes(32):
                continue
            raw = rd(tree_off + B * 2 * q, 2 * B)
            slots = [raw[:B], raw[B:]]
            l1 = None
            for s in slots:
                if hmac.compare_digest(tree_hash(kt_good, b"TDT1", q, s), want):
                    l1 = s
                if hmac.compare_digest(tree_hash(kt_bad, b"TDT1", q, s), want):
                    bad_live += 1
            if l1 is None:
                problems.append(f"L1 page {q}: no slot matches under the good key")
                continue
            for t in range(q * 128, min((q + 1) * 128, tags_pages)):
                w0 = l1[32 * (t % 128):32 * (t % 128) + 32]
                if w0 == bytes(32):
                    continue
                raw = rd(tags_off + B * 2 * t, 2 * B)
                page = None
                for s in (raw[:B], raw[B:]):
                    if hmac.compare_digest(tree_hash(kt_good, b"TDT0", t, s), w0):
                        page = s
                    if hmac.compare_digest(tree_hash(kt_bad, b"TDT0", t, s), w0):
                        bad_live += 1
                if page is None:
                    problems.append(f"tag page {t}: no slot matches under the good key")
                    continue
                for k in range(128):
                    e = page[32 * k:32 * k + 32]
                    if e == bytes(32):
                        continue
                    b = t * 128 + k
                    seq = e[:8]
                    data = rd(data_start + b * B)
                    msg = (b"TDI1", uuid, u64(b), seq, data)
                    tags_checked += 1
                    if not hmac.compare_digest(hm(km_good, *msg)[:24], e[8:32]):
                        problems.append(f"block {b}: its table tag does not verify under the good key")
                    if hmac.compare_digest(hm(km_bad, *msg)[:24], e[8:32]):
                        bad_live += 1
                        problems.append(f"block {b}: its table tag verifies under the bad key")
        # journal blocks
        j_live_good = j_live_bad = j_stale_bad = 0
        for i in range(journal_blocks):
            blk = rd(journal_off + i * B)
            if blk[:8] != b"TDJRNL01":
                continue
            e = struct.unpack_from("<Q", blk, 8)[0]
            g = hmac.compare_digest(hm(km_good, blk[:4064]), blk[4064:4096])
            x = hmac.compare_digest(hm(km_bad, blk[:4064]), blk[4064:4096])
            if e == epoch:
                j_live_good += g
                j_live_bad += x
            else:
                j_stale_bad += x
        bad_live += j_live_bad
        if j_live_bad:
            problems.append(f"{j_live_bad} journal block(s) of the live epoch verify under the bad key")
        stale_bad += j_stale_bad
    print(f"epoch {epoch}: {tags_checked} table tags checked against their data; "
          f"live journal blocks: {j_live_good} good, {j_live_bad} bad-key; "
          f"stale copies under the bad key: {stale_bad} (superblock slots + old journal blocks)")
    for p in problems[:10]:
        print(p, file=sys.stderr)
    if problems or bad_live or (strict and stale_bad):
        sys.exit(1)


main()
