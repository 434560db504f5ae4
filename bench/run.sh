#!/bin/sh
# Runs the benchmark (see bench/bench.py --help). Needs fio, qemu-utils.
cd "$(dirname "$0")/.." || exit 1
exec python3 bench/bench.py "$@"
