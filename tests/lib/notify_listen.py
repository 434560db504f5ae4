#!/usr/bin/env python3
"""A stand-in for systemd's side of sd_notify, for tests.

    notify_listen.py NOTIFY_SOCKET NBD_SOCKET [TIMEOUT]

Binds NOTIFY_SOCKET (a path, or an abstract name written '@name') as an
AF_UNIX datagram socket that receives the sender's credentials, like
systemd's notify socket, writes "listening" on stdout, then waits for one
message. When it arrives it checks at once that NBD_SOCKET accepts a
connection and sends the NBD greeting ("NBDMAGIC"), and prints

    pid=PID nbd=ok READY=1 STATUS=...

(the fields of the message on one line). Exit 0 if the message had READY=1
and the NBD socket answered, 1 otherwise, 2 on timeout.
"""
import os
import socket
import struct
import sys


def main():
    name, nbd = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30
    addr = "\0" + name[1:] if name.startswith("@") else name
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.settimeout(timeout)
    print("listening", flush=True)
    try:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    except socket.timeout:
        print("no message within %g s" % timeout, flush=True)
        return 2
    pid = -1
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    # is the NBD socket serving right now?
    state = "fail"
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    try:
        c.connect(nbd)
        if c.recv(8) == b"NBDMAGIC":
            state = "ok"
    except OSError as e:
        state = "fail(%s)" % e
    finally:
        c.close()
    fields = msg.decode(errors="replace").split("\n")
    print("pid=%d nbd=%s %s" % (pid, state, " ".join(fields)), flush=True)
    if not name.startswith("@"):
        os.unlink(name)
    return 0 if "READY=1" in fields and state == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
