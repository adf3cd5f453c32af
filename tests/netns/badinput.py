#!/usr/bin/env python3
"""A hostile or broken sender on the LAN, for test_bad_input.py.

  badinput.py VNI SEED RANDOM HOST:PORT...

Sends to each HOST:PORT every kind of datagram an endpoint must refuse
(wrong flags, wrong VNI, 0-7 bytes, header-only leaves from a stranger,
frames of 14 bytes or less, 65507-byte datagrams) and RANDOM seeded random
ones that are none of them either. Prints, as JSON, how many of each kind
went out, classified by the rules of PROTOCOL.md section 1.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import time

MARKER = b"VXBAD"
# A frame an endpoint would deliver if the header in front of it were right.
FRAME = b"\xff" * 6 + bytes.fromhex("00005e005302") + b"\x88\xb5" + MARKER.ljust(46, b"!")


def header(vni: int, flags: int = 0x08, r1: bytes = b"\0\0\0", r2: int = 0) -> bytes:
    return bytes([flags]) + r1 + vni.to_bytes(3, "big") + bytes([r2])


def classify(data: bytes, good: bytes) -> str:
    """The drop reason a correct endpoint gives (or "leaves"); never "deliver" here."""
    if len(data) < 8:
        return "short"
    if data[:8] != good:
        return "bad_vni" if data[:4] == good[:4] and data[7] == 0 else "bad_flags"
    if len(data) == 8:
        return "leaves"
    if len(data) <= 22:
        return "runt"
    if len(data) > 1518 + 8:
        return "oversize"
    raise AssertionError(f"a deliverable frame was generated: {data[:40].hex()}")


def crafted(vni: int) -> list[bytes]:
    good = header(vni)
    out = [header(vni, flags) + FRAME for flags in (0x00, 0x0C, 0x88, 0xFF, 0x09)]
    out += [header(vni, r1=b"\0\x01\0") + FRAME, header(vni, r2=1) + FRAME]
    out += [header(other) + FRAME for other in {0, 1, vni - 1, vni + 1, 0xFFFFFF} - {vni}]
    out += [good[:n] for n in range(8)]                       # short, 0-7 bytes
    out += [good] * 3                                          # leaves of a stranger
    out += [good + FRAME[:n] for n in range(1, 15)]            # runts, 8+1 .. 8+14 bytes
    out += [good + FRAME + bytes(65507 - 8 - len(FRAME))] * 2  # the largest UDP/IPv4 datagram
    return out


def fuzzed(rng: random.Random, vni: int) -> bytes:
    """Random bytes, often near-valid: the right header with one bit flipped, or cut short."""
    good = header(vni)
    size = rng.choice((rng.randrange(0, 30), rng.randrange(0, 2000)))
    data = bytearray(rng.randbytes(size))
    kind = rng.randrange(4)
    if kind == 1 and size >= 8:       # one flipped bit in the header
        data[:8] = good
        bit = rng.randrange(64)
        data[bit // 8] ^= 1 << (bit % 8)
    elif kind == 2 and size >= 8:     # right flags, some other VNI
        data[:8] = header(rng.choice([v for v in (rng.randrange(1 << 24), vni ^ 1) if v != vni]))
    elif kind == 3:                   # the right header, but nothing deliverable after it
        data[:8] = good[:min(size, 8)]
        del data[22:]
    return bytes(data)


def main(vni: int, seed: int, count: int, targets: list[tuple[str, int]]) -> None:
    rng = random.Random(seed)
    good = header(vni)
    batch = crafted(vni) + [fuzzed(rng, vni) for _ in range(count)]
    sent: dict[str, int] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for target in targets:
            for i, data in enumerate(batch):
                s.sendto(data, target)
                reason = classify(data, good)
                sent[reason] = sent.get(reason, 0) + 1
                if i % 25 == 24:
                    time.sleep(0.001)  # no receive buffer on the way may overflow
    print(json.dumps({"sent": sent, "total": len(batch) * len(targets)}), flush=True)


if __name__ == "__main__":
    dests = [(h, int(p)) for h, _, p in (t.rpartition(":") for t in sys.argv[4:])]
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), dests)
