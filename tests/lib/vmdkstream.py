#!/usr/bin/env python3
"""Writes a stream-optimized VMDK laid out the way VMware's exporters
stream it (VMware "Virtual Disk Format 1.1", stream-optimized extents),
which qemu-img does not make: the header's grain directory offset is "at
the end" (all ones), compressed grains come first, each grain table
follows the grains it maps behind a GT marker, then a GD marker and the
grain directory, a footer marker and a footer (the header again, with the
real GD offset), and an end-of-stream marker. All-zero grains are left
out (GTE 0); a grain table with no grain is left out (GD entry 0).

usage: vmdkstream.py RAW OUT

The test (t-vmdk-interop.sh) checks what this writes with libvmdk first
(vmdkinfo, vmdkmount), so that our reader is not judged by our writer.
"""
import os
import struct
import sys
import zlib

RAW, OUT = sys.argv[1], sys.argv[2]
SECT = 512
GRAIN = 128  # sectors
GTES = 512
data = open(RAW, 'rb').read()
cap = (len(data) + SECT - 1) // SECT
ngts = -(-cap // (GRAIN * GTES))
HDR = struct.Struct('<IIIQQQQIQQQ')


def header(gd):
    b = bytearray(SECT)
    HDR.pack_into(b, 0, 0x564d444b, 3, 1 | 1 << 16 | 1 << 17, cap, GRAIN, 1, 20, GTES, 0, gd, 128)
    b[73:77] = b'\n \r\n'
    struct.pack_into('<H', b, 77, 1)
    return bytes(b)


def marker(nsect, mtype):
    b = bytearray(SECT)
    struct.pack_into('<QII', b, 0, nsect, 0, mtype)
    return bytes(b)


def pad(b):
    return b + b'\0' * (-len(b) % SECT)


name = os.path.basename(OUT)
desc = ('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
        'createType="streamOptimized"\n\n# Extent description\n'
        'RW %d SPARSE "%s"\n\n# The Disk Data Base\n#DDB\n\n'
        'ddb.virtualHWVersion = "4"\nddb.adapterType = "lsilogic"\n' % (cap, name)).encode()
out = bytearray(header(0xffffffffffffffff))
out += desc + b'\0' * (20 * SECT - len(desc))
out += b'\0' * (128 * SECT - len(out))  # grains start at the overhead
gd = [0] * ngts
for t in range(ngts):
    gt = [0] * GTES
    for i in range(GTES):
        g = t * GTES + i
        chunk = data[g * GRAIN * SECT:(g + 1) * GRAIN * SECT]
        if g * GRAIN >= cap or not chunk.strip(b'\0'):
            continue
        chunk = chunk + b'\0' * (GRAIN * SECT - len(chunk))
        z = zlib.compress(chunk, 6)
        gt[i] = len(out) // SECT
        out += pad(struct.pack('<QI', g * GRAIN, len(z)) + z)
    if any(gt):
        out += marker(4, 1)  # GT marker: the table's size in sectors
        gd[t] = len(out) // SECT
        out += pad(struct.pack('<%dI' % GTES, *gt))
out += marker(-(-ngts * 4 // SECT), 2)  # GD marker
gd_off = len(out) // SECT
out += pad(struct.pack('<%dI' % ngts, *gd))
out += marker(1, 3)  # footer marker
out += header(gd_off)
out += marker(0, 0)  # end of stream
with open(OUT, 'wb') as f:
    f.write(out)
