#!/usr/bin/env python3
"""Finds a tapdisk's expanded key material in its memory and says whether
every copy lies in locked memory (mlock: never written to swap).

    keysched.py PID VOLUME_KEY_HEX

From the 64-byte volume key it derives the subkeys as docs/FORMAT.md says
(HKDF-SHA256, empty salt, info "tdcrypt v1 " + purpose), then expands
what the crypto code keeps in memory while serving:

  xts   the AES-256 encryption key schedules of the data and tweak halves
        (240 bytes each; searched in the byte order of AES-NI and of the
        portable C code, which stores each word as a native integer)
  mac, tree   the HMAC-SHA256 inner and outer states (the SHA-256 chaining
        values after the padded key block, 8 native 32-bit words)

and scans every readable mapping of /proc/PID/mem (root: the tapdisk is
not dumpable). One line per copy found: what, address, mapping, and
whether the mapping is locked ("lo" in /proc/PID/smaps VmFlags).

Exit status: 0 every copy is in locked memory and at least one XTS
schedule and one HMAC state were found; 1 a copy lies in memory that is
not locked; 2 the XTS schedule was not found (a layout this script does
not know: not AES-NI, not the C code); 3 usage or access error."""
import hashlib
import hmac
import re
import struct
import sys


def hkdf(ikm, info, length):
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


# ---- AES-256 key expansion (FIPS-197 section 5.2) ---------------------------

def gf_mul(a, b):
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1
        b >>= 1
    return r


def make_sbox():
    inv = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if gf_mul(a, b) == 1:
                inv[a] = b
                break
    box = []
    for a in range(256):
        x = inv[a]
        y = x
        for k in range(1, 5):
            y ^= ((x << k) | (x >> (8 - k))) & 0xFF
        box.append(y ^ 0x63)
    return box


SBOX = make_sbox()


def aes256_schedule(key):
    """60 words of 4 bytes each."""
    w = [list(key[4 * i:4 * i + 4]) for i in range(8)]
    rcon = 1
    for i in range(8, 60):
        t = list(w[i - 1])
        if i % 8 == 0:
            t = t[1:] + t[:1]
            t = [SBOX[b] for b in t]
            t[0] ^= rcon
            rcon = gf_mul(rcon, 2)
        elif i % 8 == 4:
            t = [SBOX[b] for b in t]
        w.append([a ^ b for a, b in zip(w[i - 8], t)])
    return w


def schedule_layouts(key):
    w = aes256_schedule(key)
    plain = b"".join(bytes(x) for x in w)             # AES-NI: bytes in order
    native = b"".join(bytes(reversed(x)) for x in w)  # C code: big-endian words as native
    return [plain, native]


# ---- SHA-256 compression (FIPS 180-4) ------------------------------------------

def _primes(n):
    ps, c = [], 2
    while len(ps) < n:
        if all(c % p for p in ps):
            ps.append(c)
        c += 1
    return ps


def _iroot(x, k):
    lo, hi = 0, 1 << (x.bit_length() // k + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid ** k <= x:
            lo = mid
        else:
            hi = mid - 1
    return lo


K = [_iroot(p << 96, 3) & 0xFFFFFFFF for p in _primes(64)]   # cube roots, 32 fraction bits
H0 = [_iroot(p << 64, 2) & 0xFFFFFFFF for p in _primes(8)]   # square roots


def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF


def sha256_compress(h, block):
    w = list(struct.unpack(">16I", block))
    for i in range(16, 64):
        s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & 0xFFFFFFFF)
    a, b, c, d, e, f, g, hh = h
    for i in range(64):
        t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] +
              w[i]) & 0xFFFFFFFF
        t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & 0xFFFFFFFF
        a, b, c, d, e, f, g, hh = (t1 + t2) & 0xFFFFFFFF, a, b, c, (d + t1) & 0xFFFFFFFF, e, f, g
    return [(x + y) & 0xFFFFFFFF for x, y in zip(h, [a, b, c, d, e, f, g, hh])]


def hmac_states(key):
    k = key.ljust(64, b"\0")
    inner = sha256_compress(H0, bytes(b ^ 0x36 for b in k))
    outer = sha256_compress(H0, bytes(b ^ 0x5C for b in k))
    return [struct.pack("<8I", *inner), struct.pack("<8I", *outer)]


def self_test():
    # the midstate after one block equals a full hash of a padded 55-byte message
    msg = b"abc"
    block = msg + b"\x80" + b"\0" * (55 - len(msg)) + struct.pack(">Q", 8 * len(msg))
    got = struct.pack(">8I", *sha256_compress(H0, block))
    assert got == hashlib.sha256(msg).digest(), "sha256 self-test"
    # FIPS-197 appendix A.3: the last word of the AES-256 schedule
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    assert bytes(aes256_schedule(key)[59]) == bytes.fromhex("706c631e"), "aes self-test"


def mappings(pid):
    """(start, end, name, locked, readable) per mapping, from smaps."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m:
                cur = [int(m.group(1), 16), int(m.group(2), 16), m.group(4) or "[anon]", False,
                       m.group(3)[0] == "r"]
                maps.append(cur)
            elif line.startswith("VmFlags:") and cur:
                cur[3] = " lo " in f" {line[8:].strip()} "
    return maps


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 3
    self_test()
    pid, vk = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
    if len(vk) != 64:
        print("the volume key is 64 bytes", file=sys.stderr)
        return 3
    xts = hkdf(vk, b"tdcrypt v1 xts", 64)
    wanted = []
    for half, name in ((xts[:32], "xts data key schedule"), (xts[32:], "xts tweak key schedule")):
        for lay in schedule_layouts(half):
            wanted.append((name, lay))
    for purpose in (b"mac", b"tree"):
        k = hkdf(vk, b"tdcrypt v1 " + purpose, 32)
        for st, which in zip(hmac_states(k), ("inner", "outer")):
            wanted.append((f"hmac {purpose.decode()} {which} state", st))
    found = {"xts": 0, "hmac": 0}
    unlocked = 0
    try:
        maps = mappings(pid)
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
    except OSError as e:
        print(f"cannot read process {pid}: {e}", file=sys.stderr)
        return 3
    for start, end, name, locked, readable in maps:
        if not readable or end - start > (1 << 32):
            continue
        try:
            mem.seek(start)
            data = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        for what, pat in wanted:
            i = data.find(pat)
            while i >= 0:
                found["xts" if what.startswith("xts") else "hmac"] += 1
                unlocked += not locked
                print(f"{what} at {start + i:#x} in {name}: {'locked' if locked else 'NOT LOCKED'}")
                i = data.find(pat, i + 1)
    print(f"copies found: {found['xts']} xts schedules, {found['hmac']} hmac states; "
          f"{unlocked} not in locked memory")
    if unlocked:
        return 1
    if not found["xts"] or not found["hmac"]:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
