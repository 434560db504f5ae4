#!/usr/bin/env python3
"""Corrupt and hostile VMDK images for tests/integration/t-vmdk-hostile.sh.

usage: vmdkevil.py OUTDIR SPARSE STREAM

SPARSE is a 64 MiB monolithicSparse image made by qemu-img (two grain
tables; grain 0 holds 0xab, grain 16 -- guest offset 1 MiB -- holds 0xcd), STREAM the same data as a
streamOptimized image. Each case is a patched copy in OUTDIR; one manifest
line per case on stdout:

    NAME|MODE|EXPECT|PATH

MODE refuse: the open must fail with one line containing EXPECT.
MODE ioerror / roerror: the image opens (roerror: read-only), reading or
writing guest offset EXPECT fails with EIO, the rest keeps being served.
MODE fallback: opens read-only, guest offset 1 MiB reads 0xcd although
the primary grain table entry is garbage (the redundant copy is used).
MODE rdonly: opens read-write, reads as fallback, a write there is EIO.
MODE none: a file other cases use.
"""
import os
import shutil
import struct
import sys
import zlib

OUT, SPARSE, STREAM = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(OUT, exist_ok=True)
HDR = struct.Struct('<IIIQQQQIQQQ')  # magic .. overhead
FIELDS = ['magic', 'version', 'flags', 'capacity', 'grain', 'desc_off', 'desc_size', 'gtes',
          'rgd', 'gd', 'overhead']
manifest = []


def hdr(b):
    return dict(zip(FIELDS, HDR.unpack_from(b, 0)))


def put_hdr(b, h):
    HDR.pack_into(b, 0, *[h[k] for k in FIELDS])


def gte_pos(b, grain, redundant=False):
    """byte offset of the grain table entry of `grain`"""
    h = hdr(b)
    per_gt = h['gtes']
    gd = (h['rgd'] if redundant else h['gd']) * 512
    gt = struct.unpack_from('<I', b, gd + 4 * (grain // per_gt))[0] * 512
    return gt + 4 * (grain % per_gt)


def case(name, mode, expect, src, patch, suffix='.vmdk'):
    b = bytearray(open(src, 'rb').read())
    b = patch(b) or b
    path = os.path.join(OUT, name + suffix)
    with open(path, 'wb') as f:
        f.write(b)
    manifest.append('%s|%s|%s|%s' % (name, mode, expect, path))


def set_hdr(**kw):
    def p(b):
        h = hdr(b)
        h.update(kw)
        put_hdr(b, h)
    return p


def set_gte(grain, value, which='both'):
    def p(b):
        if which in ('both', 'primary'):
            struct.pack_into('<I', b, gte_pos(b, grain), value)
        if which in ('both', 'redundant'):
            struct.pack_into('<I', b, gte_pos(b, grain, True), value)
    return p


def set_gd(i, value, which='both'):
    def p(b):
        h = hdr(b)
        if which in ('both', 'primary'):
            struct.pack_into('<I', b, h['gd'] * 512 + 4 * i, value)
        if which in ('both', 'redundant'):
            struct.pack_into('<I', b, h['rgd'] * 512 + 4 * i, value)
    return p


def text(name, mode, expect, body):
    path = os.path.join(OUT, name + '.vmdk')
    with open(path, 'wb') as f:
        f.write(body)
    manifest.append('%s|%s|%s|%s' % (name, mode, expect, path))


sb = bytearray(open(SPARSE, 'rb').read())
sh = hdr(sb)
gd_sect, rgd_sect = sh['gd'], sh['rgd']
gt0 = struct.unpack_from('<I', sb, gd_sect * 512)[0]

# ---- refused at open --------------------------------------------------------
case('truncated-header', 'refuse', 'shorter than a VMDK header', SPARSE, lambda b: b[:300])
case('truncated-tables', 'refuse', 'not inside the file', SPARSE, lambda b: b[:gd_sect * 512])
case('bad-magic', 'refuse', 'not a VMDK image', SPARSE, set_hdr(magic=0x58585858))
case('bad-version', 'refuse', 'version 9 is not supported', SPARSE, set_hdr(version=9))
case('unknown-flags', 'refuse', 'unknown header flags', SPARSE, set_hdr(flags=sh['flags'] | 1 << 5))
case('huge-capacity', 'refuse', 'capacity', SPARSE, set_hdr(capacity=1 << 40))
case('huge-gd', 'refuse', 'grain directory would have', SPARSE,
     set_hdr(capacity=1 << 37, grain=8, gtes=128))
case('odd-grain', 'refuse', 'grain size 7 sectors', SPARSE, set_hdr(grain=7))
case('big-gt', 'refuse', 'entries per grain table', SPARSE, set_hdr(gtes=1024))
case('gd-outside', 'refuse', 'grain directory (sector', SPARSE, set_hdr(gd=1 << 30))
case('gd-zero', 'refuse', 'grain directory offset is 0', SPARSE, set_hdr(gd=0))
case('gd-on-descriptor', 'refuse', 'overlaps', SPARSE, set_hdr(gd=2))
case('rgd-outside', 'refuse', 'redundant grain directory', SPARSE, set_hdr(rgd=(1 << 32) + 5))
case('gd-entry-outside', 'refuse', 'grain directory entry 0', SPARSE, set_gd(0, 0xfffffff0))
case('gd-entry-on-descriptor', 'refuse', 'grain directory entry 0', SPARSE, set_gd(0, 1))
case('gd-entry-disagree', 'refuse', 'disagree', SPARSE, set_gd(0, 0x7ffffff0, 'primary'))
case('gts-overlap', 'refuse', 'two grain tables overlap', SPARSE, set_gd(1, gt0 + 1, 'primary'))
case('cowd', 'refuse', 'COWD', SPARSE, set_hdr(magic=0x44574f43))


def delta(b):
    i = b.find(b'parentCID=ffffffff')
    assert i > 0
    b[i:i + 18] = b'parentCID=12345678'


case('embedded-parent', 'refuse', 'delta disks', SPARSE, delta)


def nl_broken(b):
    b[73:77] = b'\n \n\n'


case('newline-check', 'refuse', 'newline check', SPARSE, nl_broken)
case('stream-no-footer', 'refuse', 'footer', STREAM, set_hdr(gd=0xffffffffffffffff))
# binary garbage: a control byte first, so it never passes for text (random
# bytes alone did about once in 80 runs, and then met the descriptor parser)
text('desc-garbage', 'refuse', 'not a VMDK image', b'\x01' + os.urandom(4095))
text('desc-prose', 'refuse', "neither 'key=value' nor an extent",
     b'# Disk DescriptorFile\nversion=1\nthis is not a descriptor at all\n')
text('desc-control', 'refuse', 'control character',
     b'# Disk DescriptorFile\n#' + b'-' * 600 + b'\nversion=1\ncreateType="x\x01y"\nRW 100 FLAT "a" 0\n')
text('desc-no-extent', 'refuse', 'names no extent', b'# Disk DescriptorFile\nversion=1\n')
text('desc-vmfssparse', 'refuse', 'VMFSSPARSE is not supported',
     b'version=1\nRW 2048 VMFSSPARSE "x-delta.vmdk"\n')
text('desc-parent', 'refuse', 'delta disks',
     b'version=1\nparentCID=0badf00d\nRW 2048 FLAT "x-flat.vmdk" 0\n')
text('desc-huge-extent', 'refuse', 'extent size',
     b'version=1\nRW 99999999999999999 FLAT "x-flat.vmdk" 0\n')
text('desc-sum-huge', 'refuse', 'add up to more than',
     b'version=1\n' + b'RW 137438953472 ZERO\n' * 2)
text('desc-etc-passwd', 'refuse', 'extent 0', b'version=1\nRW 2048 FLAT "/etc/passwd" 0\n')
text('desc-dotdot', 'refuse', 'extent 0', b'version=1\nRW 2048 FLAT "../../etc/shadow" 0\n')
text('desc-self', 'refuse', 'named twice', b'version=1\nRW 2048 FLAT "desc-self.vmdk" 0\n')
text('desc-bad-version', 'refuse', 'version', b'version=7\nRW 2048 ZERO\n')
shutil.copyfile(SPARSE, os.path.join(OUT, 'ext-copy.vmdk'))
text('desc-sparse-too-big', 'refuse', 'its header only',
     b'version=1\nRW 262144 SPARSE "ext-copy.vmdk"\n')
text('desc-same-file-twice', 'refuse', 'named twice',
     b'version=1\nRW 2048 FLAT "ext-copy.vmdk" 0\nRW 2048 FLAT "./ext-copy.vmdk" 2048\n')
# two sparse extents whose grain directories together exceed what one
# extent may have (3 Mi entries each, 12 MiB; the files are sparse)
for nm in ('bigdir1', 'bigdir2'):
    b = bytearray(512)
    HDR.pack_into(b, 0, 0x564d444b, 1, 1, 3 << 30, 8, 0, 0, 128, 0, 1, 0)
    b[73:77] = b'\n \r\n'
    with open(os.path.join(OUT, nm + '.vmdk'), 'wb') as f:
        f.write(b)
        f.truncate(13 << 20)
text('desc-gd-budget', 'refuse', 'grain directories of all extents',
     b'version=1\nRW 2048 SPARSE "bigdir1.vmdk"\nRW 2048 SPARSE "bigdir2.vmdk"\n')
text('desc-raw-device', 'refuse', 'raw devices',
     b'version=1\ncreateType="fullDevice"\nRW 2048 FLAT "/dev/sda" 0\n')

# ---- per grain: EIO, the rest is served -------------------------------------
G16 = 1 << 20  # guest offset of grain 16
case('gte-outside', 'ioerror', str(G16), SPARSE, set_gte(16, 0x7ffffff0))
case('gte-on-descriptor', 'ioerror', str(G16), SPARSE, set_gte(16, 2))
case('gte-on-gd', 'ioerror', str(G16), SPARSE, set_gte(16, gd_sect))
case('gte-on-gt', 'ioerror', str(G16), SPARSE, set_gte(16, gt0))
case('gte-past-end', 'ioerror', str(G16), SPARSE,
     set_gte(16, len(sb) // 512 - 8))  # the grain would run past the end of the file
case('gte-fallback', 'fallback', str(G16), SPARSE, set_gte(16, 0x7ffffff0, 'primary'))
# the same behind a descriptor, as an RDONLY extent of a writable VBD:
# read through the redundant copy, writes refused, nothing repaired
case('rdonly-ext', 'none', '', SPARSE, set_gte(16, 0x7ffffff0, 'primary'))
text('desc-rdonly-sparse', 'rdonly', str(G16), b'version=1\nRDONLY 131072 SPARSE "rdonly-ext.vmdk"\n')

st = bytearray(open(STREAM, 'rb').read())
marker = struct.unpack_from('<I', st, gte_pos(st, 16))[0] * 512
msize = struct.unpack_from('<I', st, marker + 8)[0]
assert struct.unpack_from('<Q', st, marker)[0] == 16 * 128, 'unexpected stream layout'


def stream_patch(fn):
    def p(b):
        fn(b)
    return p


def garbage(b):
    b[marker + 12:marker + 12 + msize] = os.urandom(msize)


def bomb(b):
    z = zlib.compress(b'\0' * (4 << 20), 9)  # 4 MiB of zeros where one grain fits
    assert len(z) <= msize
    b[marker + 12:marker + 12 + len(z)] = z
    struct.pack_into('<I', b, marker + 8, len(z))


def short(b):
    z = zlib.compress(b'\x11' * 4096)  # inflates to less than a grain
    b[marker + 12:marker + 12 + len(z)] = z
    struct.pack_into('<I', b, marker + 8, len(z))


case('stream-garbage', 'roerror', str(G16), STREAM, garbage)
case('stream-bomb', 'roerror', str(G16), STREAM, bomb)
case('stream-short', 'roerror', str(G16), STREAM, short)
case('stream-marker-lba', 'roerror', str(G16), STREAM,
     lambda b: struct.pack_into('<Q', b, marker, 99))
case('stream-marker-size', 'roerror', str(G16), STREAM,
     lambda b: struct.pack_into('<I', b, marker + 8, 0xffffffff))
case('stream-marker-zero', 'roerror', str(G16), STREAM,
     lambda b: struct.pack_into('<I', b, marker + 8, 0))
case('stream-gte-outside', 'roerror', str(G16), STREAM, set_gte(16, 0x7ffffff0))

print('\n'.join(manifest))
