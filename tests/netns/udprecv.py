#!/usr/bin/env python3
"""Receive the marked UDP datagrams of udpsend.py and check each one.

  udprecv.py PORT COUNT MARKER SIZE [TIMEOUT [ACK]]

Prints "ready" once bound, then, when COUNT datagrams came or TIMEOUT
seconds passed without one, a JSON line: how many arrived intact, damaged
(wrong size, marker or padding), or twice. With ACK, tells the sender
"ACK n" after every ACK intact datagrams (udpsend.py --window).

TIMEOUT counts from the first datagram on: before it, the sender is still
being started (a new Python in a namespace: over 5 s in a qemu guest under
load, when the receiver gave up and the burst met a closed port).
FIRST_TIMEOUT only bounds a sender that never sends.
"""

import json
import socket
import sys

SO_RCVBUFFORCE = 33
FIRST_TIMEOUT = 120.0


def main(port: int, count: int, marker: bytes, size: int, timeout: float, ack: int) -> None:
    seen: set[int] = set()
    damaged = duplicates = 0
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:  # IPv4 too (dual stack)
        # Room for every datagram, whatever rmem_max says (we are root): a slow
        # reader (a qemu guest under TCG) must not turn into lost datagrams.
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.settimeout(max(timeout, FIRST_TIMEOUT))
        print("ready", flush=True)
        while len(seen) < count:
            try:
                data, sender = s.recvfrom(65536)
            except TimeoutError:
                break
            s.settimeout(timeout)
            index = data[len(marker):len(marker) + 6]
            if (len(data) != size or not data.startswith(marker) or not index.isdigit()
                    or data[len(marker) + 6:].strip(b".")):
                damaged += 1
            elif int(index) in seen:
                duplicates += 1
            else:
                seen.add(int(index))
                if ack and len(seen) % ack == 0:
                    s.sendto(b"ACK %d" % len(seen), sender)
    print(json.dumps({"intact": len(seen), "damaged": damaged, "duplicates": duplicates}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4]),
         float(sys.argv[5]) if len(sys.argv) > 5 else 5.0, int(sys.argv[6]) if len(sys.argv) > 6 else 0)
