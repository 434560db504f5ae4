#!/usr/bin/env python3
"""Corrupt and hostile VHD images for t-vhd-hostile.sh.

usage: vhdevil.py DIR GOOD_DYNAMIC GOOD_FIXED

GOOD_DYNAMIC is a dynamic VHD written by QEMU (qemu-img create -f vpc,
then qemu-io: blocks 0 and 1 allocated, 2 MiB blocks), GOOD_FIXED a fixed
one. Each case copies one and changes a few fields (the Virtual Hard Disk
Image Format Specification's layout: big-endian footer of 512 bytes, at
the end and, for dynamic disks, at offset 0; dynamic header of 1024 bytes
at the footer's data offset; the BAT). Prints one manifest line per
image: NAME|refuse|EXPECTED MESSAGE PART|PATH.
"""
import os
import shutil
import struct
import sys


def csum(buf, off):
    b = bytearray(buf)
    b[off:off + 4] = b"\0\0\0\0"
    return (~sum(b)) & 0xFFFFFFFF


class Img:
    def __init__(self, src, dst):
        shutil.copyfile(src, dst)
        self.path = dst
        self.data = bytearray(open(dst, "rb").read())

    # footers: the copy at 0 (dynamic) and the one at the end
    def footers(self):
        offs = [len(self.data) - 512]
        if self.data[0:8] == b"conectix":
            offs.append(0)
        return offs

    def footer_set(self, off, fmt, value, fix=True, which=None):
        for f in which if which is not None else self.footers():
            struct.pack_into(fmt, self.data, f + off, value)
            if fix:
                self.footer_fix(f)

    def footer_fix(self, f):
        struct.pack_into(">I", self.data, f + 64, csum(self.data[f:f + 512], 64))

    def hdr(self):
        return struct.unpack_from(">Q", self.data, len(self.data) - 512 + 16)[0]

    def header_set(self, off, fmt, value, fix=True):
        h = self.hdr()
        struct.pack_into(fmt, self.data, h + off, value)
        if fix:
            self.header_fix()

    def header_fix(self):
        h = self.hdr()
        struct.pack_into(">I", self.data, h + 36, csum(self.data[h:h + 1024], 36))

    def bat(self):
        h = self.hdr()
        return struct.unpack_from(">Q", self.data, h + 16)[0]

    def bat_set(self, i, v):
        struct.pack_into(">I", self.data, self.bat() + 4 * i, v)

    def bat_get(self, i):
        return struct.unpack_from(">I", self.data, self.bat() + 4 * i)[0]

    def save(self):
        open(self.path, "wb").write(self.data)


def utf16be_name(name):
    raw = name.encode("utf-16-be")
    return raw + b"\0" * (512 - len(raw))


def main():
    d, dyn, fixed = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(d, exist_ok=True)
    out = []

    def case(name, expect, src, fn):
        im = Img(src, os.path.join(d, name + ".vhd"))
        fn(im)
        im.save()
        out.append("%s|refuse|%s|%s" % (name, expect, im.path))

    case("short", "too short for a VHD footer", dyn, lambda im: im.data.__delitem__(slice(100, None)))

    def nocookie(im):
        for f in im.footers():
            im.data[f:f + 8] = b"XXXXXXXX"
    case("no-cookie", "no 'conectix' cookie", dyn, nocookie)

    def footer_csum(im):
        im.data[len(im.data) - 512 + 100] ^= 0x5A
    case("footer-checksum", "footer checksum mismatch", dyn, footer_csum)
    case("fixed-footer-checksum", "footer checksum mismatch", fixed, footer_csum)

    def header_csum(im):
        im.data[im.hdr() + 800] ^= 0x01
    case("header-checksum", "dynamic header checksum mismatch", dyn, header_csum)
    case("header-cookie", "no 'cxsparse' cookie", dyn,
         lambda im: im.header_set(0, ">8s", b"cxdense!"))
    case("huge-size", "above 2 TiB", dyn, lambda im: im.footer_set(48, ">Q", 1 << 60))
    case("huge-fixed", "fixed disk of", fixed, lambda im: im.footer_set(48, ">Q", 1 << 40))
    case("fixed-padded", "fixed disk of", fixed, lambda im: im.footer_set(48, ">Q", 8 << 20))
    case("zero-size", "not a positive multiple of 512", dyn, lambda im: im.footer_set(48, ">Q", 0))
    case("odd-size", "not a positive multiple of 512", fixed, lambda im: im.footer_set(48, ">Q", 4097))
    case("version", "footer version 2.0", dyn, lambda im: im.footer_set(12, ">I", 0x20000))
    case("disk-type", "disk type 5", dyn, lambda im: im.footer_set(60, ">I", 5))
    case("data-offset", "dynamic header offset", dyn, lambda im: im.footer_set(16, ">Q", 1 << 40))
    case("header-version", "dynamic header version 3.0", dyn,
         lambda im: im.header_set(24, ">I", 0x30000))
    case("block-size", "block size", dyn, lambda im: im.header_set(32, ">I", 3 << 20))
    case("bat-entries", "the BAT has", dyn, lambda im: im.header_set(28, ">I", 1 << 23))
    case("bat-too-few", "the BAT has", dyn, lambda im: im.header_set(28, ">I", 1))
    case("bat-offset", "the BAT (offset", dyn, lambda im: im.header_set(16, ">Q", 1 << 36))
    case("bat-on-header", "overlaps the footer copy or the header", dyn,
         lambda im: im.header_set(16, ">Q", 512))
    case("bat-outside", "BAT entry 0 (block at byte", dyn, lambda im: im.bat_set(0, 0x40000000))
    case("bat-on-metadata", "BAT entry 0 (block at byte", dyn, lambda im: im.bat_set(0, 1))
    case("bat-last", "BAT entry 5 (block at byte", dyn,
         lambda im: im.bat_set(5, (len(im.data) - 1024) // 512))
    case("bat-overlap", "overlapping blocks", dyn, lambda im: im.bat_set(1, im.bat_get(0) + 8))

    # truncated in the middle: the footer copy at 0 opens it, then the
    # blocks past the new end refuse it
    def truncate(im):
        del im.data[im.bat_get(1) * 512 + 4096:]
    case("truncated", "BAT entry 1 (block at byte", dyn, truncate)

    # differencing disks whose parent cannot be used
    def diff(parent_name, uuid_from=None):
        def fn(im):
            im.footer_set(60, ">I", 4)
            im.header_set(64, ">512s", utf16be_name(parent_name), fix=False)
            if uuid_from is not None:
                im.header_set(40, ">16s", bytes(im.data[len(im.data) - 512 + 68:][:16]), fix=False)
            im.header_fix()
        return fn
    case("parent-missing", "not found", dyn, diff("nothere.vhd"))
    case("parent-self", "already in the chain", dyn, diff("parent-self.vhd", True))
    # A -> B -> A: B is the plain image made a child of A
    case("loop-a", "already in the chain", dyn, diff("loop-b.vhd", True))
    case("loop-b", "already in the chain", dyn, diff("loop-a.vhd", True))
    # the parent exists but is not the one the child was made from
    shutil.copyfile(dyn, os.path.join(d, "other-parent.vhd"))

    def wrong_uuid(im):
        diff("other-parent.vhd")(im)
        im.header_set(40, ">16s", b"\x11" * 16)
    case("parent-uuid", "but the child expects", dyn, wrong_uuid)
    # the parent is a symbolic link
    os.symlink(os.path.join(d, "other-parent.vhd"), os.path.join(d, "link-parent.vhd"))
    case("parent-symlink", "symbolic link", dyn, diff("link-parent.vhd"))

    # a W2ku locator (absolute, UTF-16LE) naming a parent in a directory
    # no backing file may come from; its data goes just before the footer
    outside = os.path.join(os.path.dirname(os.path.abspath(d)), "outside")
    os.makedirs(outside, exist_ok=True)
    shutil.copyfile(dyn, os.path.join(outside, "p.vhd"))

    def w2ku_outside(im):
        path = os.path.join(outside, "p.vhd").encode("utf-16-le")
        foot = bytes(im.data[-512:])
        off = len(im.data) - 512
        im.data[off:] = path.ljust(512, b"\0") + foot
        diff("p.vhd", True)(im)
        struct.pack_into(">IIIIQ", im.data, im.hdr() + 576, 0x57326B75, 1, len(path), 0, off)
        im.header_fix()
    case("parent-outside", "outside the directories a backing file may come from", dyn,
         w2ku_outside)

    # a chain deeper than 32 images: deep-0 -> deep-1 -> ... -> deep-33
    for i in range(33, -1, -1):
        name = "deep-%d" % i
        im = Img(dyn, os.path.join(d, name + ".vhd"))
        if i < 33:
            diff("deep-%d.vhd" % (i + 1), True)(im)
        im.save()
    out.append("deep|refuse|parent chain deeper than 32|%s" % os.path.join(d, "deep-0.vhd"))

    print("\n".join(out))


main()
