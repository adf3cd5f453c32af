#!/usr/bin/env python3
"""Send marked UDP datagrams, for the LAN tests.

  udpsend.py HOST PORT COUNT MARKER SIZE [--broadcast]

Each payload is MARKER, the datagram's index, and padding up to SIZE bytes.
Paced lightly so that no receive buffer on the way overflows.
"""

import socket
import sys
import time


def main(host: str, port: int, count: int, marker: bytes, size: int, broadcast: bool) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if broadcast:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for i in range(count):
            payload = marker + b"%06d" % i
            s.sendto(payload.ljust(size, b"."), (host, port))
            if i % 50 == 49:
                time.sleep(0.002)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode(), int(sys.argv[5]),
         "--broadcast" in sys.argv[6:])
