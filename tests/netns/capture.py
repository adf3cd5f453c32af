#!/usr/bin/env python3
"""Capture every frame of one interface with a raw AF_PACKET socket.

As a script (run inside the interface's namespace):

    capture.py IFNAME OUTFILE [SNAPLEN]

prints "ready" once the socket is bound, then records each frame as
(direction, real length, first SNAPLEN bytes, by default all of it) until SIGTERM, drains what is
still queued and exits 0. As a module, `Capture` starts it on a LAN and
`Frame` reads the records back.
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this file also runs as a script, without tests/ on its path
    from lan import Lan

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4   # sll_pkttype of a frame the namespace sent out of the interface
SO_RCVBUFFORCE = 33
RECORD = struct.Struct("<BI H")   # pkttype, real length, stored length
SNAP = 65535  # whole frames, super-frames too: every datagram in them is seen
HERE = Path(__file__).resolve()


@dataclass(frozen=True)
class Frame:
    pkttype: int
    length: int
    data: bytes

    @property
    def incoming(self) -> bool:
        """Delivered to the namespace through the interface (for a tap: written by the endpoint)."""
        return self.pkttype != PACKET_OUTGOING

    @property
    def dst(self) -> bytes:
        return self.data[0:6]

    @property
    def src(self) -> bytes:
        return self.data[6:12]

    @property
    def ethertype(self) -> int:
        return int.from_bytes(self.data[12:14], "big") if len(self.data) >= 14 else -1

    def ip(self) -> tuple[str, str, int, bytes] | None:
        """(source, destination, protocol, L4 bytes) of an unfragmented IP packet, else None."""
        d = self.data
        if self.ethertype == 0x0800 and len(d) >= 34:
            ihl = (d[14] & 0x0F) * 4
            if int.from_bytes(d[20:22], "big") & 0x3FFF:  # MF or a fragment offset
                return None
            return (socket.inet_ntop(socket.AF_INET, d[26:30]), socket.inet_ntop(socket.AF_INET, d[30:34]),
                    d[23], d[14 + ihl:])
        if self.ethertype == 0x86DD and len(d) >= 54:
            return (socket.inet_ntop(socket.AF_INET6, d[22:38]), socket.inet_ntop(socket.AF_INET6, d[38:54]),
                    d[20], d[54:])
        return None

    def ports(self) -> tuple[int, int] | None:
        """(source port, destination port) of a TCP or UDP packet."""
        pkt = self.ip()
        if pkt is None or pkt[2] not in (6, 17) or len(pkt[3]) < 4:
            return None
        l4 = pkt[3]
        return int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")

    def udp(self) -> tuple[str, int, str, int, bytes] | None:
        """(source, sport, destination, dport, payload) of an unfragmented UDP datagram."""
        pkt = self.ip()
        if pkt is None or pkt[2] != 17 or len(pkt[3]) < 8:
            return None
        l4 = pkt[3]
        size = int.from_bytes(l4[4:6], "big")
        return (pkt[0], int.from_bytes(l4[0:2], "big"), pkt[1], int.from_bytes(l4[2:4], "big"),
                bytes(l4[8:size]))

    def is_ip_fragment(self) -> bool:
        d = self.data
        if self.ethertype == 0x0800 and len(d) >= 22:
            return bool(int.from_bytes(d[20:22], "big") & 0x3FFF)
        return self.ethertype == 0x86DD and len(d) >= 21 and d[20] == 44  # fragment header


def carried(frames: list[Frame], marker: bytes) -> int:
    """How many marked datagrams these frames carry: a super-frame (the
    endpoint merges runs of one flow, as GRO does) carries several."""
    return sum(f.data.count(marker) for f in frames)


def incoming_with(marker: bytes) -> Callable[[Frame], bool]:
    """A predicate: a frame that came in through the interface and carries marker."""
    return lambda f: f.incoming and marker in f.data


def read_records(path: Path) -> list[Frame]:
    raw = path.read_bytes()
    frames, off = [], 0
    while off + RECORD.size <= len(raw):
        pkttype, length, stored = RECORD.unpack_from(raw, off)
        if off + RECORD.size + stored > len(raw):
            break  # being written
        off += RECORD.size
        frames.append(Frame(pkttype, length, raw[off:off + stored]))
        off += stored
    return frames


class Capture:
    """A capture running in `ns` on `ifname`; started ready, ended by stop()."""

    def __init__(self, lan: Lan, ns: str, ifname: str, path: Path, snap: int = SNAP) -> None:
        self.lan, self.path = lan, path
        self.proc = lan.spawn(ns, sys.executable, str(HERE), ifname, str(path), str(snap), capture=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.lan.stop(self.proc)
            raise RuntimeError(f"capture on {ns}/{ifname} did not start: {line!r}")

    def frames(self) -> list[Frame]:
        """What was captured so far (the capture goes on)."""
        return read_records(self.path)

    def wait_for(self, predicate: Callable[[Frame], bool], count: int = 1, timeout: float = 5.0,
                 what: str = "a frame") -> None:
        """Wait until `count` captured frames satisfy predicate: a sentinel sent after a
        flow tells that everything the flow could have brought here has arrived."""
        from lan import wait_for

        wait_for(lambda: sum(map(predicate, self.frames())) >= count, timeout=timeout,
                 what=f"{what} in {self.path.name}")

    def stop(self) -> list[Frame]:
        """End the capture (it drains its queue first) and return every frame it saw."""
        code = self.lan.stop(self.proc)
        if code != 0:
            raise RuntimeError(f"capture ended with status {code}")
        return read_records(self.path)


def main(ifname: str, out: str, snap: int) -> int:
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    # Protocol 0 until bound: no frame of another interface slips in.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.bind((ifname, ETH_P_ALL))
    sock.settimeout(0.05)
    buf = bytearray(1 << 17)
    with open(out, "wb", buffering=0) as f:  # each record at once: readable while running
        print("ready", flush=True)
        while True:
            try:
                # After SIGTERM: take what is queued, without waiting for more.
                n, _anc, _flags, addr = sock.recvmsg_into(
                    [buf], 0, socket.MSG_TRUNC | (socket.MSG_DONTWAIT if stop else 0))
            except (TimeoutError, BlockingIOError):
                if stop:
                    break
                continue
            except InterruptedError:
                continue
            kept = min(n, snap, len(buf))
            f.write(RECORD.pack(addr[2], n, kept) + buf[:kept])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else SNAP))
