#!/usr/bin/env python3
"""A TCP relay in front of swtpm that stops a TPM client right after
TPM2_Unseal, while the unsealed key is still in the client's memory.

    tpm_hold_proxy.py LISTEN_PORT SWTPM_PORT DIR

Listens on LISTEN_PORT (TPM commands) and LISTEN_PORT+1 (swtpm's control
channel) on 127.0.0.1 and relays them to SWTPM_PORT and SWTPM_PORT+1.
Commands are relayed whole (the 10-byte header gives each size). Once the
answer to a TPM2_Unseal has gone back, the next command is held: the relay
creates DIR/held and waits for DIR/release before passing it on. Writes
DIR/ready once listening. Test-only (tests/integration/t-vdkey-heap.sh).
"""
import os
import socket
import struct
import sys
import threading
import time

CC_UNSEAL = 0x15E

listen_port, tpm_port, state_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
unsealed = threading.Event()


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_message(s):
    hdr = recv_exact(s, 10)
    if hdr is None:
        return None
    size = struct.unpack(">I", hdr[2:6])[0]
    if size < 10 or size > 1 << 20:
        return None
    rest = recv_exact(s, size - 10)
    return None if rest is None else hdr + rest


def hold():
    open(os.path.join(state_dir, "held"), "w").close()
    while not os.path.exists(os.path.join(state_dir, "release")):
        time.sleep(0.05)


def serve_commands(client):
    up = socket.create_connection(("127.0.0.1", tpm_port))
    try:
        while True:
            cmd = recv_message(client)
            if cmd is None:
                return
            if unsealed.is_set():
                unsealed.clear()
                hold()
            cc = struct.unpack(">I", cmd[6:10])[0]
            up.sendall(cmd)
            rsp = recv_message(up)
            if rsp is None:
                return
            client.sendall(rsp)
            if cc == CC_UNSEAL:
                unsealed.set()
    finally:
        up.close()
        client.close()


def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve_ctrl(client):
    up = socket.create_connection(("127.0.0.1", tpm_port + 1))
    threading.Thread(target=pump, args=(client, up), daemon=True).start()
    pump(up, client)


def listen(port, handler):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(8)

    def loop():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


listen(listen_port, serve_commands)
listen(listen_port + 1, serve_ctrl)
open(os.path.join(state_dir, "ready"), "w").close()
while True:
    time.sleep(3600)
