#!/bin/sh
# crypt:rbd vs qemu-nbd on librbd LUKS2, on a throwaway single-node Ceph
# cluster (see bench/rbd.py --help). Needs the ceph packages, fio, qemu-nbd
# with rbd support (qemu-block-extra).
cd "$(dirname "$0")/.." || exit 1
exec python3 bench/rbd.py "$@"
