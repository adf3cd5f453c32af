"""The 2016 module read the header from user memory, checked it, and let the
lower socket read the user memory again. Here another process flips the VNI
in the very buffer being sent, for a few seconds; whatever reaches the wire
must carry the socket's VNI."""

from __future__ import annotations

import errno
import mmap
import os
import socket
import struct
import time

import vxkguest as vx
from vxkguest import ANY, PORT

SECONDS = 3.0
SO_RCVBUFFORCE = 33


def _udp_payloads(pkt: bytes, family: int) -> bytes | None:
    """The UDP payload of an IP packet to PORT, else None."""
    if family == socket.AF_INET:
        if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
            return None
        ihl = (pkt[0] & 15) * 4
        udp = pkt[ihl:]
    else:
        if len(pkt) < 48 or pkt[0] >> 4 != 6 or pkt[6] != 17:
            return None
        udp = pkt[40:]
    if struct.unpack(">H", udp[2:4])[0] != PORT:
        return None
    return udp[8:]


def test_flipping_vni_never_reaches_the_wire(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    cap = lan.packet_socket()
    rcv = lan.peer_socket(f, (ANY[f], PORT), group=True)
    for s in (cap, rcv):  # keep every datagram of the run for inspection
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
    shared = mmap.mmap(-1, 4096)  # MAP_SHARED | MAP_ANONYMOUS: seen by the child
    body = vx.frame(256)
    shared[: len(body)] = body
    stop = 4000  # flag byte, away from the datagram
    pid = os.fork()
    if pid == 0:  # the flipper: VNI 1000 <-> 1001, as fast as it can
        try:
            while shared[stop] == 0:
                shared[6] = 0xE9
                shared[6] = 0xE8
        finally:
            os._exit(0)
    sent = refused = 0
    try:
        view = memoryview(shared)[: len(body)]
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            try:
                ep.ucast.sendto(view, ep.group)
                sent += 1
            except PermissionError:
                refused += 1
            except OSError as e:  # a full queue is not the point here
                assert e.errno in (errno.ENOBUFS, errno.EAGAIN), e
        view.release()
    finally:
        shared[stop] = 1
        os.waitpid(pid, 0)

    assert sent > 0 and refused > 0, f"the race did not happen: sent {sent}, refused {refused}"
    cap.setblocking(False)
    rcv.setblocking(False)
    on_wire = foreign = 0
    try:
        time.sleep(0.5)
        while True:
            try:
                pkt = cap.recv(65536)
            except BlockingIOError:
                break
            payload = _udp_payloads(pkt, f)
            if payload is None:
                continue
            on_wire += 1
            foreign += payload[:8] != vx.header()
        delivered = bad_delivered = 0
        while True:
            try:
                d = rcv.recv(65536)
            except BlockingIOError:
                break
            delivered += 1
            bad_delivered += d[:8] != vx.header()
    finally:
        cap.close()
        rcv.close()
        shared.close()
    print(f"sent {sent}, refused {refused}, captured {on_wire}, received {delivered}")
    assert foreign == 0, f"{foreign} datagrams with a foreign header on the wire"
    assert bad_delivered == 0
    assert on_wire >= sent // 2 and delivered >= sent // 2, "too few datagrams were inspected"
