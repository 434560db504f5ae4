#!/usr/bin/env python3
"""Reads a callgrind output file and prints the total instruction count and
the number of calls to the functions named on the command line:
    cgcalls.py FILE malloc calloc ...   ->   "total N" then "name N" lines"""
import re
import sys


def main():
    path, want = sys.argv[1], sys.argv[2:]
    names, calls, total, cur = {}, {w: 0 for w in want}, 0, None
    for line in open(path, errors="replace"):
        if line.startswith("summary:") or line.startswith("totals:"):
            total = max(total, int(line.split()[1]))
            continue
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            kind, i, n = m.groups()
            if n:
                names[i] = n.strip()
            if kind == "cfn":
                cur = names.get(i)
            continue
        if line.startswith("calls=") and cur in calls:
            calls[cur] += int(line.split()[0][6:])
    print("total", total)
    for w in want:
        print(w, calls[w])


if __name__ == "__main__":
    main()
