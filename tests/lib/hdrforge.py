#!/usr/bin/env python3
"""Edits a field of both crypt header copies and recomputes their SHA-256
checksums (forgeable by design; the MAC is not), per docs/FORMAT.md.

    hdrforge.py IMAGE FIELD VALUE [--copy a|b|both] [--no-checksum]

FIELD: integrity, cipher (strings), data_offset, data_size, tag_size,
flags, seqno (integers), or raw:OFFSET (VALUE = hex bytes)."""
import hashlib
import struct
import sys

COPIES = {"a": 0, "b": 65536}
STR = {"integrity": (112, 32), "cipher": (48, 32)}
INT = {"seqno": (16, "<Q"), "flags": (40, "<Q"), "data_offset": (96, "<Q"),
       "data_size": (104, "<Q"), "tag_size": (144, "<I"), "key_bits": (80, "<I")}


def main():
    args = sys.argv[1:]
    copy, checksum = "both", True
    if "--copy" in args:
        i = args.index("--copy")
        copy = args[i + 1]
        del args[i:i + 2]
    if "--no-checksum" in args:
        args.remove("--no-checksum")
        checksum = False
    img, field, value = args
    with open(img, "r+b") as f:
        for name, base in COPIES.items():
            if copy not in ("both", name):
                continue
            f.seek(base)
            h = bytearray(f.read(16384))
            if field in STR:
                off, n = STR[field]
                h[off:off + n] = value.encode().ljust(n, b"\0")
            elif field in INT:
                off, fmt = INT[field]
                struct.pack_into(fmt, h, off, int(value, 0))
            elif field.startswith("raw:"):
                off = int(field[4:], 0)
                b = bytes.fromhex(value)
                h[off:off + len(b)] = b
            else:
                sys.exit("unknown field " + field)
            if checksum:
                h[16352:16384] = hashlib.sha256(bytes(h[:16352])).digest()
            f.seek(base)
            f.write(h)


if __name__ == "__main__":
    main()
