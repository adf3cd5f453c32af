#!/usr/bin/env python3
"""Print the payload of every UDP datagram that arrives, for the guard tests.

  vxlisten.py PORT [GROUP [--on-group]]

Binds PORT (the wildcard address, or GROUP with --on-group; SO_REUSEADDR,
as any local process can), joins GROUP if given, prints "ready", then one line per datagram: its
payload, decoded as text with errors replaced. Runs until ended.
"""

import socket
import struct
import sys


def main(port: int, group: str | None, on_group: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((group if group and on_group else "0.0.0.0", port))
        if group:
            mreq = socket.inet_aton(group) + struct.pack("=4si", bytes(4), 0)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        print("ready", flush=True)
        while True:
            print(s.recv(65536).decode(errors="replace"), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None, "--on-group" in sys.argv[3:])
