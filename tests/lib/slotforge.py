#!/usr/bin/env python3
"""Writes a keyslot into both crypt header copies of an image, with the KDF
parameters given and random salt, nonce, wrapped key and tag (a slot no
passphrase opens), per docs/FORMAT.md; recomputes the checksums.

    slotforge.py IMAGE SLOT argon2id T M_KIB P [--volume-key HEX]
    slotforge.py IMAGE SLOT pbkdf2 ITERATIONS [--volume-key HEX]
    slotforge.py IMAGE SLOT scrypt N R P [--volume-key HEX]

SLOT may be a range, e.g. 1-15. Without --volume-key the header MAC no
longer verifies: what someone without the key can do (a hostile header).
With it (the 64-byte volume key in hex) the MAC is recomputed as well:
what the owner of the image can do, e.g. a keyslot enrolled on a bigger
host."""
import hashlib
import hmac
import os
import struct
import sys

COPIES = (0, 65536)
COPY_LEN = 16384
MAC_OFF, SUM_OFF = 16320, 16352
KDF_IDS = {"argon2id": 1, "pbkdf2": 2, "scrypt": 3}


def hkdf(ikm, info, length):
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def slot_bytes(kdf, params):
    kid = KDF_IDS[kdf]
    a = params[0]
    b = params[1] if len(params) > 1 else 0
    c = params[2] if len(params) > 2 else 0
    head = struct.pack("<IIQIIII", 1, kid, a, b, c, 64, 0)
    body = os.urandom(32) + os.urandom(12) + b"\0" * 4 + os.urandom(64) + os.urandom(16)
    s = head + body
    return s + b"\0" * (256 - len(s))


def main():
    args = sys.argv[1:]
    vk = None
    if "--volume-key" in args:
        i = args.index("--volume-key")
        vk = bytes.fromhex(args[i + 1])
        del args[i:i + 2]
    if len(args) < 4 or args[2] not in KDF_IDS:
        sys.exit(__doc__)
    img, slots, kdf = args[0], args[1], args[2]
    params = [int(x, 0) for x in args[3:]]
    lo, _, hi = slots.partition("-")
    rng = range(int(lo), int(hi or lo) + 1)
    mac_key = hkdf(vk, b"tdcrypt v1 header", 32) if vk else None
    new = {s: slot_bytes(kdf, params) for s in rng}  # the same in both copies
    with open(img, "r+b") as f:
        for base in COPIES:
            f.seek(base)
            h = bytearray(f.read(COPY_LEN))
            for s in rng:
                off = 1024 + 256 * s
                h[off:off + 256] = new[s]
            if mac_key:
                h[MAC_OFF:MAC_OFF + 32] = hmac.new(mac_key, bytes(h[:MAC_OFF]),
                                                   hashlib.sha256).digest()
            h[SUM_OFF:SUM_OFF + 32] = hashlib.sha256(bytes(h[:SUM_OFF])).digest()
            f.seek(base)
            f.write(h)


if __name__ == "__main__":
    main()
