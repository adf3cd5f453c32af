#!/usr/bin/env python3
"""Answer every TCP connection with a tag and the caller's address, for the
reachability tests (which listener answered, and what source it saw).

  tagserver.py TAG PORT [PORT...]

Listens on every address, IPv4 and IPv6, on each PORT; prints "ready" once
all listen; to each connection writes "TAG ADDRESS\\n" and closes it.
Runs until ended.
"""

import selectors
import socket
import sys


def main(tag: str, ports: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for port in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.listen(64)
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            conn, peer = key.fileobj.accept()  # type: ignore[union-attr]
            with conn:
                conn.sendall(f"{tag} {peer[0].removeprefix('::ffff:')}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1], [int(p) for p in sys.argv[2:]])
