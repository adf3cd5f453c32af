#!/usr/bin/env python3
"""Send one datagram the way an attacker on a host would: a plain UDP socket.

  vxinject.py HOST PORT VNI MARKER [--raw] [--gso] [--src=MAC]

The payload is a vxvde header for VNI, then a broadcast Ethernet frame
(ethertype 0x88b5, local experimental) carrying MARKER; with --raw only
MARKER (no vxvde header). With --gso it is the second segment of one UDP
GSO send (UDP_SEGMENT), whose first segment is plain filler: what a filter
that reads only the start of the payload sees. --src=aa:bb:cc:dd:ee:ff
sets the frame's source MAC (default 02:00:00:00:00:01). Exits 0 if sendto()
returned, 1 with the error.
"""

import socket
import sys

UDP_SEGMENT = 103


def main(host: str, port: int, vni: int, marker: bytes, raw: bool, gso: bool,
         src: bytes = b"\x02\x00\x00\x00\x00\x01") -> int:
    frame = b"\xff" * 6 + src + b"\x88\xb5" + marker
    header = bytes([0x08, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\x00"
    payload = marker if raw else header + frame
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        if gso:
            s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, len(payload))
            payload = b"f" * len(payload) + payload
        try:
            s.sendto(payload, (host, port))
        except OSError as err:
            print(f"sendto: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode(),
                  "--raw" in sys.argv[5:], "--gso" in sys.argv[5:],
                  *[bytes.fromhex(a[6:].replace(":", "")) for a in sys.argv[5:] if a.startswith("--src=")]))
