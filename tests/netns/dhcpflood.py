"""A misbehaving DHCP client, for fault tests: run inside a namespace on the
VLAN, it sends for SECONDS as fast as it can, alternately, DHCPDISCOVER and
DHCPREQUEST messages of its own MAC (new transaction ids each time) and
malformed datagrams (random bytes, truncated headers, options running past
the end) to the DHCP server port, broadcast. Prints how many it sent.

    dhcpflood.py IFNAME MAC SECONDS
    dhcpflood.py IFNAME MAC spoof FIRST COUNT

spoof: a DHCPREQUEST for each of COUNT addresses from FIRST on, each in the
name of another, made-up client (chaddr and client id): the attempt to take
the whole pool (DHCP starvation) from one tap.

The messages are built here on purpose (a fault injector, not a client).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

MAGIC = b"\x63\x82\x53\x63"


def message(kind: int, mac: bytes, xid: int, want: bytes = bytes([192, 0, 2, 130])) -> bytes:
    """A BOOTREQUEST of DHCP message type kind (1 DISCOVER, 3 REQUEST) asking for address want."""
    head = struct.pack("!BBBBIHHIIII16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, 0, 0, 0, 0,
                       mac.ljust(16, b"\0"), b"", b"")
    options = bytes([53, 1, kind, 61, 7, 1]) + mac + bytes([50, 4]) + want + bytes([255])
    return head + MAGIC + options


def malformed(n: int) -> bytes:
    choice = n % 3
    if choice == 0:
        return os.urandom(1 + n % 600)
    if choice == 1:
        return message(1, os.urandom(6), n)[:n % 240]              # truncated header
    return message(3, os.urandom(6), n)[:-1] + bytes([61, 200, 1])  # an option past the end


def spoof(s: socket.socket, first: str, count: int) -> int:
    start = int.from_bytes(socket.inet_aton(first), "big")
    for i in range(count):
        want = (start + i).to_bytes(4, "big")
        s.sendto(message(3, os.urandom(6), i, want), ("255.255.255.255", 67))
    return count


def main() -> int:
    ifname, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.bind(("0.0.0.0", 68))
    if sys.argv[3] == "spoof":
        print(spoof(s, sys.argv[4], int(sys.argv[5])))
        return 0
    seconds = float(sys.argv[3])
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        data = message(1 + 2 * (sent % 2), mac, sent) if sent % 4 < 2 else malformed(sent)
        try:
            s.sendto(data, ("255.255.255.255", 67))
            sent += 1
        except OSError:  # a full queue: the flood outruns the tap
            time.sleep(0.0005)
    print(sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
