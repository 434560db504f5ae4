#!/usr/bin/env python3
"""Turns README.md's client examples ("Using it with libvirt, QEMU and Xen")
into qemu-io command lines against another socket, for tests.

    readme_clients.py README.md SOCKET

Prints one line per example: NAME, a tab, then the qemu-io arguments that
open the same disk through the same block-layer options, NUL-free and
shell-quoted. The README's socket path (/run/tapdisk/vm1.sock) becomes
SOCKET.
  qemu-drive     -drive file=URI,format=F,cache=C    -> -f F -t C URI
  qemu-blockdev  the -blockdev nodes, nested          -> json:{...}
  libvirt-disk   what libvirt makes of the <disk>:    -> -t C json:{raw over nbd,
                 an nbd node (unix socket, export)       export = the source name}
"""
import json
import re
import shlex
import sys
import xml.etree.ElementTree as ET

README_SOCK = "/run/tapdisk/vm1.sock"


def block_after(text, marker):
    """The example that follows <!-- marker -->: an indented block or a
    fenced one."""
    tag = "<!-- %s -->" % marker
    rest = text[text.index(tag) + len(tag):].lstrip("\n")
    if rest.startswith("```"):
        body = rest.split("\n", 1)[1]
        return body[:body.index("```")]
    lines = []
    for line in rest.split("\n"):
        if not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).replace("\\\n", " ")


def main():
    text = open(sys.argv[1]).read()
    sock = sys.argv[2]
    out = []

    argv = shlex.split(block_after(text, "qemu-drive"))
    # the URI in file= has no comma, so the options split at commas
    drive = dict(kv.split("=", 1) for kv in argv[argv.index("-drive") + 1].split(","))
    uri = drive["file"].replace(README_SOCK, sock)
    out.append(("qemu-drive", ["-f", drive["format"], "-t", drive.get("cache", "writeback"), uri]))

    argv = shlex.split(block_after(text, "qemu-blockdev"))
    nodes = {}
    for i, a in enumerate(argv):
        if a == "-blockdev":
            n = json.loads(argv[i + 1].replace(README_SOCK, sock))
            nodes[n.pop("node-name")] = n
    top = [n for n in nodes.values() if isinstance(n.get("file"), str)][0]
    top["file"] = nodes[top["file"]]
    out.append(("qemu-blockdev", ["json:" + json.dumps(top)]))

    disk = ET.fromstring(block_after(text, "libvirt-disk"))
    src, host, drv = disk.find("source"), disk.find("source/host"), disk.find("driver")
    assert disk.get("type") == "network" and src.get("protocol") == "nbd"
    assert host.get("transport") == "unix"
    nbd = {"driver": "nbd", "server": {"type": "unix",
                                       "path": host.get("socket").replace(README_SOCK, sock)}}
    if src.get("name"):
        nbd["export"] = src.get("name")
    node = {"driver": drv.get("type"), "file": nbd}
    out.append(("libvirt-disk", ["-t", drv.get("cache", "writeback"), "json:" + json.dumps(node)]))

    for name, args in out:
        print(name + "\t" + " ".join(shlex.quote(a) for a in args))


if __name__ == "__main__":
    main()
