#!/usr/bin/env python3
"""Runs a command with a pseudo-terminal as its controlling terminal and its
standard input and output, like a program started from an administrator's
shell; records what the terminal shows.

    ptyrun.py PIDFILE SCREENFILE COMMAND [ARG...]

The command's pid goes to PIDFILE once it runs; everything written to the
terminal (the command's output, and the echo of any input the terminal
receives, typed or injected) is appended to SCREENFILE as it arrives.
Standard error stays the caller's. Exits with the command's status."""
import os
import sys


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    pidfile, screen, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        # a session leader's first terminal becomes its controlling terminal
        tty = os.open(os.ttyname(slave), os.O_RDWR)
        os.close(slave)
        os.dup2(tty, 0)
        os.dup2(tty, 1)
        if tty > 1:
            os.close(tty)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    os.close(slave)
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{pid}\n")
    os.rename(pidfile + ".tmp", pidfile)
    with open(screen, "ab", buffering=0) as out:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every holder of the terminal is gone
                break
            if not data:
                break
            out.write(data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
