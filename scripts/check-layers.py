#!/usr/bin/env python3
"""Checks that the tree's layers only include downwards (docs/ARCHITECTURE.md).

    scripts/check-layers.py [ROOT]

Every folder below is one layer, or one component of a layer; folders on
one line are siblings. A C file may include headers of its own folder and
of folders on LOWER lines only: never a higher layer, never a sibling.
Programs and tools outside these folders (tests/, fuzz/, xen/) are not
checked. A second rule: the programs at the top ask drivers what they can
do (capabilities in tapdisk/block/driver.h), they never compare a driver's
name. Prints one line per violation and exits 1 if there is any.
"""
import os
import re
import sys

LAYERS = [
    # bottom
    ["crypt/backend"],  # the leaf crypto backend: OpenSSL, libargon2, secret memory
    ["tapdisk/core"],  # event loop, aio, worker pool, buffers, logging
    ["tapdisk/block"],  # the layer API, chains and specs, the VBD, the file table
    ["tapdisk/drivers", "tapdisk/qcow2", "tapdisk/nbd", "tapdisk/blkif", "integrity",
     "tests/drivers", "tapdisk/vmdk", "tapdisk/vhd"],
    ["crypt"],  # the crypt layer and header (inserts integrity below itself)
    ["keymgr", "tapdisk/registry"],  # the key-management library; the driver list
    ["tapdisk/control", "keymgr/vdkey"],  # the control protocol and tap-ctl; vdkey
    ["tapdisk/daemon"],  # the tapdisk process
    # top
]
LAYERS[3].append("tapdisk/qos")  # the qos layer and the host arbiter
# where a driver's name must not decide anything
NO_NAMES = ["tapdisk/daemon", "tapdisk/control", "keymgr/vdkey", "keymgr"]

RANK = {d: i for i, line in enumerate(LAYERS) for d in line}
FOLDERS = sorted(RANK, key=len, reverse=True)  # longest prefix first
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
NAME_CMP = re.compile(r'str(?:n?cmp|casecmp)\s*\([^;]*(?:drv|driver)\s*->\s*name')


def folder_of(path):
    for d in FOLDERS:
        if path.startswith(d + "/") and "/" not in path[len(d) + 1:]:
            return d
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = 0
    for d in FOLDERS:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            print("check-layers: missing layer folder %s" % d)
            bad += 1
            continue
        for name in sorted(os.listdir(full)):
            if not name.endswith((".c", ".h")):
                continue
            rel = d + "/" + name
            with open(os.path.join(full, name), errors="replace") as f:
                lines = f.readlines()
            for no, line in enumerate(lines, 1):
                m = INCLUDE.match(line)
                if m:
                    inc = m.group(1)
                    dst = folder_of(inc)
                    if dst is None or dst == d:
                        continue
                    if RANK[dst] > RANK[d]:
                        print("%s:%d: includes %s: %s (layer %d) is above %s (layer %d)" %
                              (rel, no, inc, dst, RANK[dst], d, RANK[d]))
                        bad += 1
                    elif RANK[dst] == RANK[d]:
                        print("%s:%d: includes %s: %s and %s are siblings (layer %d): "
                              "neither may use the other" % (rel, no, inc, dst, d, RANK[d]))
                        bad += 1
                if d in NO_NAMES and NAME_CMP.search(line):
                    print("%s:%d: compares a driver's name: ask for a capability "
                          "(tapdisk/block/driver.h) instead" % (rel, no))
                    bad += 1
    if bad:
        print("check-layers: %d violation(s); the layers are in docs/ARCHITECTURE.md" % bad)
        return 1
    print("check-layers: %d folders, every include goes downwards" % len(FOLDERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
