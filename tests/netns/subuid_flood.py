#!/usr/bin/env python3
"""Hold control connections from many uids at once (run as root of a user
namespace whose uids 0..COUNT-1 are the caller's subordinate uids).

    subuid_flood.py SOCKET COUNT PER_UID

Forks one process per uid 1..COUNT-1, each keeping PER_UID connections
open without sending a word: the daemon closes idle ones after its
deadline and they connect again at once. Prints "ready" when every
process has connected once; runs until killed (its process group).
"""

import os
import selectors
import socket
import sys


def hold(path: str, count: int) -> None:
    sel = selectors.DefaultSelector()

    def connect() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            return
        sel.register(sock, selectors.EVENT_READ)

    for _ in range(count):
        connect()
    os.write(1, b".")
    while True:
        for key, _ in sel.select():
            sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
            connect()


def main(path: str, count: int, per_uid: int) -> None:
    r, w = os.pipe()
    for uid in range(1, count):
        if os.fork() == 0:
            try:
                os.close(r)
                os.setresuid(uid, uid, uid)
                os.dup2(w, 1)
                hold(path, per_uid)
            finally:
                os._exit(1)  # never back into the loop
    os.close(w)
    got = 0
    while got < count - 1:
        got += len(os.read(r, 4096))
    print("ready", flush=True)
    os.waitpid(-1, 0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
