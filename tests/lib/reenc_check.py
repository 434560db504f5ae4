#!/usr/bin/env python3
"""Independent check of a volume-key rotation's on-disk state, for
tests/integration/t-reencrypt-kill9.sh: every data block of a crypt image
(no integrity layer) decrypts to the expected plaintext under exactly the
key the header's boundary names -- the new key below B, the old key from
B on -- and not under the other one. Blocks of a staged window (the redo
rewrites them from the staging area) are skipped.

Written from docs/FORMAT.md ("Keys derived from the volume key", tweak
mode plain64) with the `cryptography` package (OpenSSL), not our code.

usage: reenc_check.py IMAGE DATA_OFFSET EXPECTED OLDKEY NEWKEY B W
OLDKEY/NEWKEY: keyring payloads (64-byte key + 1 flag byte)."""
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def xts_key(path):
    vk = open(path, "rb").read()[:64]
    return HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                info=b"tdcrypt v1 xts").derive(vk)


def decrypt(key, blk, ct):
    tweak = blk.to_bytes(8, "little") + bytes(8)
    d = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
    return d.update(ct) + d.finalize()


def main():
    img, doff, exp, old, new, b, w = sys.argv[1:8]
    doff, b, w = int(doff), int(b), int(w)
    kold, knew = xts_key(old), xts_key(new)
    expected = open(exp, "rb").read()
    bad = 0
    checked = 0
    zero = bytes(4096)
    with open(img, "rb") as f:
        for blk in range(len(expected) // 4096):
            if b <= blk < b + w:
                continue
            f.seek(doff + blk * 4096)
            ct = f.read(4096)
            want = expected[blk * 4096:(blk + 1) * 4096]
            if ct == zero:
                ok = want == zero
            else:
                right, wrong = (knew, kold) if blk < b else (kold, knew)
                ok = decrypt(right, blk, ct) == want and decrypt(wrong, blk, ct) != want
            checked += 1
            if not ok:
                bad += 1
                if bad <= 5:
                    print(f"block {blk}: not the expected data under the "
                          f"{'new' if blk < b else 'old'} key", file=sys.stderr)
    print(f"checked {checked} blocks (B={b}, W={w}): {bad} wrong")
    sys.exit(1 if bad else 0)


main()
