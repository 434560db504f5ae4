#!/usr/bin/env python3
"""An NBD frontend that migrates: the VM side of a migration handover.

    rbd_nbdproxy.py LISTEN_SOCKET BACKEND_SOCKET HANDOVER_CMD

Clients (fio, qemu-io) connect to LISTEN_SOCKET; every request is passed to
the current backend tapdisk. On SIGUSR1 the proxy does what a migrating
frontend does (docs/MIGRATION.md): it stops sending new requests, runs
HANDOVER_CMD (sh -c; it pauses the source tapdisk and starts the
destination, printing the destination's NBD socket path on its last line),
then connects every session to the destination and re-issues, in order,
every request the source never answered. Replies the source sends later
for re-issued requests are dropped. The clients never see the switch.

Only what the tests need: fixed newstyle, NBD_OPT_GO/INFO/EXPORT_NAME,
simple replies (structured replies and meta contexts are refused, so the
client falls back). Prints "handover done: N re-issued" to stderr.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_REPLY = 0x67446698
OPT_EXPORT_NAME, OPT_ABORT, OPT_INFO, OPT_GO = 1, 2, 6, 7
REP_ACK, REP_INFO, REP_ERR_UNSUP = 1, 3, 0x80000001
CMD_READ, CMD_WRITE, CMD_DISC = 0, 1, 2


def recvall(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return bytes(b)


def backend_connect(path):
    """Oldstyle-free handshake: fixed newstyle + NBD_OPT_EXPORT_NAME."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    hdr = recvall(s, 18)
    assert hdr[:8] == NBDMAGIC, hdr
    hflags = struct.unpack(">H", hdr[16:18])[0]
    cflags = hflags & 3
    s.sendall(struct.pack(">I", cflags))
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 0))
    size, tflags = struct.unpack(">QH", recvall(s, 10))
    if not cflags & 2:
        recvall(s, 124)
    return s, size, tflags


class Backend:
    def __init__(self, path):
        self.s, self.size, self.tflags = backend_connect(path)
        self.sent = {}  # handle -> bytes of read data to expect
        self.slock = threading.Lock()

    def send(self, handle, hdr, payload, rdlen):
        with self.slock:
            self.sent[handle] = rdlen
            self.s.sendall(hdr + payload)


class Session:
    def __init__(self, c, be):
        self.c = c
        self.be = be
        self.wlock = threading.Lock()
        self.pending = {}  # handle -> (hdr, payload, rdlen), in arrival order


class Proxy:
    def __init__(self, listen, backend, cmd):
        self.backend = backend
        self.cmd = cmd
        self.lock = threading.Condition()
        self.switching = False
        self.sessions = []
        s, self.size, self.tflags = backend_connect(backend)
        s.close()
        self.ls = socket.socket(socket.AF_UNIX)
        if os.path.exists(listen):
            os.unlink(listen)
        # the path appears only once listening (clients poll for it)
        tmp = listen + ".tmp"
        if os.path.exists(tmp):
            os.unlink(tmp)
        self.ls.bind(tmp)
        self.ls.listen(8)
        os.rename(tmp, listen)

    def serve(self):
        while True:
            c, _ = self.ls.accept()
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    # ---- handshake with the client
    def handshake(self, c):
        c.sendall(NBDMAGIC + struct.pack(">QH", IHAVEOPT, 3))
        cflags = struct.unpack(">I", recvall(c, 4))[0]
        while True:
            magic, opt, ln = struct.unpack(">QII", recvall(c, 16))
            recvall(c, ln)
            if opt == OPT_EXPORT_NAME:
                c.sendall(struct.pack(">QH", self.size, self.tflags))
                if not cflags & 2:
                    c.sendall(b"\0" * 124)
                return
            if opt in (OPT_GO, OPT_INFO):
                info = struct.pack(">HQH", 0, self.size, self.tflags)
                c.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, REP_INFO, len(info)) + info)
                c.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, REP_ACK, 0))
                if opt == OPT_GO:
                    return
            elif opt == OPT_ABORT:
                raise EOFError
            else:
                c.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, REP_ERR_UNSUP, 0))

    def session(self, c):
        try:
            self.handshake(c)
            with self.lock:
                sess = Session(c, Backend(self.backend))
                self.sessions.append(sess)
        except (EOFError, OSError, AssertionError):
            c.close()
            return
        threading.Thread(target=self.backend_reader, args=(sess, sess.be), daemon=True).start()
        try:
            while True:
                hdr = recvall(c, 28)
                magic, flags, typ, handle, off, ln = struct.unpack(">IHHQQI", hdr)
                payload = recvall(c, ln) if typ == CMD_WRITE else b""
                if typ == CMD_DISC:
                    break
                rdlen = ln if typ == CMD_READ else 0
                with self.lock:
                    while self.switching:
                        self.lock.wait()
                    sess.pending[handle] = (hdr, payload, rdlen)
                    be = sess.be
                be.send(handle, hdr, payload, rdlen)
        except (EOFError, OSError):
            pass
        with self.lock:
            if sess in self.sessions:
                self.sessions.remove(sess)
        c.close()

    def backend_reader(self, sess, be):
        try:
            while True:
                magic, err, handle = struct.unpack(">IIQ", recvall(be.s, 16))
                with be.slock:
                    rdlen = be.sent.pop(handle, 0)
                data = recvall(be.s, rdlen) if rdlen and not err else b""
                with self.lock:
                    if sess.be is not be or handle not in sess.pending:
                        continue  # the destination answers it instead
                    del sess.pending[handle]
                with sess.wlock:
                    sess.c.sendall(struct.pack(">IIQ", SIMPLE_REPLY, err, handle) + data)
        except (EOFError, OSError):
            pass

    def handover(self):
        with self.lock:
            self.switching = True
        out = subprocess.run(["sh", "-c", self.cmd], stdout=subprocess.PIPE, text=True)
        if out.returncode != 0:
            print("handover command failed: rc=%d" % out.returncode, file=sys.stderr)
            os._exit(3)
        dest = out.stdout.strip().splitlines()[-1].split("socket=")[-1]
        time.sleep(0.3)  # replies the source sent before its pause returned
        n = 0
        with self.lock:
            self.backend = dest
            for sess in self.sessions:
                nb = Backend(dest)
                sess.be = nb
                threading.Thread(target=self.backend_reader, args=(sess, nb),
                                 daemon=True).start()
                for h, (hdr, payload, rdlen) in list(sess.pending.items()):
                    nb.send(h, hdr, payload, rdlen)
                    n += 1
            self.switching = False
            self.lock.notify_all()
        print("handover done: %d re-issued" % n, file=sys.stderr, flush=True)


def main():
    listen, backend, cmd = sys.argv[1:4]
    p = Proxy(listen, backend, cmd)
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=p.handover).start())
    print("ready", flush=True)
    p.serve()


if __name__ == "__main__":
    main()
