#!/usr/bin/env python3
"""Send marked UDP datagrams, for the LAN tests.

  udpsend.py HOST PORT COUNT MARKER SIZE [--broadcast] [--window N]

Each payload is MARKER, the datagram's index, and padding up to SIZE bytes.
Paced lightly so that no receive buffer on the way overflows. With --window,
paced by the receiver instead (udprecv.py --ack): at most N datagrams are
unacknowledged, so no queue on the way (a tap holds 1000 frames) can
overflow however slowly the machine runs the endpoints; a window that stays
unacknowledged for 10 s is given up (the receiver's count tells the loss).
"""

import socket
import sys
import time


def wait_for_ack(s: socket.socket, acked: int) -> int:
    """The highest count the receiver acknowledged ("ACK n"), once it grew."""
    try:
        while True:
            reply = s.recv(64)
            if reply.startswith(b"ACK ") and int(reply[4:]) > acked:
                return int(reply[4:])
    except TimeoutError:
        return -1


def main(host: str, port: int, count: int, marker: bytes, size: int, broadcast: bool,
         window: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        if broadcast:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        acked = 0
        for i in range(count):
            while window and acked >= 0 and i - acked >= window:
                acked = wait_for_ack(s, acked)
            payload = marker + b"%06d" % i
            s.sendto(payload.ljust(size, b"."), (host, port))
            if not window and i % 50 == 49:
                time.sleep(0.002)


if __name__ == "__main__":
    opts = sys.argv[6:]
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode(), int(sys.argv[5]),
         "--broadcast" in opts, int(opts[opts.index("--window") + 1]) if "--window" in opts else 0)
