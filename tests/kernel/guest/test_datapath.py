"""The AF_VXVDEX data path: interoperation with plain UDP sockets, what recv
delivers and what it drops, poll/epoll, blocking, GSO and GRO."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time

import pytest
import vxkguest as vx
from vxkguest import ANY, GROUP, LOCAL, PEER, PORT


def _bad_datagrams() -> list[bytes]:
    return [
        vx.frame(80, vni=vx.OTHER_VNI),
        vx.header(flags=0x0C) + bytes(72),
        b"\x08\x00\x00\x01\x00\x03\xe8\x00" + bytes(72),
        vx.header()[:7] + b"\x01" + bytes(72),
        vx.header()[:5],
        b"",
    ]


def test_to_plain_socket_on_the_wire(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    try:
        for n in (8, 15, 64, 1400):
            data = vx.frame(n)
            ep.ucast.sendto(data, ep.group)
            got, addr = vx.recv(peer)
            assert got == data
            assert addr[:2] == (LOCAL[f], ep.uport)
    finally:
        peer.close()


def test_to_plain_socket_on_this_host(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    plain = socket.socket(f, socket.SOCK_DGRAM)
    try:
        plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        plain.bind((GROUP[f], PORT))
        vx.join(plain, f, GROUP[f], lan.ifindex)
        data = vx.frame(300)
        ep.ucast.sendto(data, ep.group)
        assert vx.recv(plain)[0] == data
        # and the endpoint's own group socket hears it too (multicast loop)
        assert vx.recv(ep.mcast)[0] == data
    finally:
        plain.close()


def test_from_plain_socket(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    peer = lan.peer_socket(f, (PEER[f], 0))
    try:
        data = vx.frame(1000, fill=0x11)
        peer.sendto(data, ep.group)
        ep.mcast.settimeout(10)
        got, anc, flags, addr = ep.mcast.recvmsg(65536, 256)
        assert got == data and flags == 0
        assert addr[:2] == (PEER[f], peer.getsockname()[1])
        if f == socket.AF_INET:
            [(level, kind, info)] = anc
            assert (level, kind, len(info)) == (socket.IPPROTO_IP, vx.IP_PKTINFO, 12)
            assert socket.inet_ntoa(info[8:12]) == GROUP[f]
        else:
            [(level, kind, info)] = anc
            assert (level, kind, len(info)) == (socket.IPPROTO_IPV6, vx.IPV6_PKTINFO, 20)
            assert socket.inet_ntop(f, info[:16]) == GROUP[f]
        # unicast replies: peer -> our unicast socket
        peer.sendto(data[:100], (LOCAL[f], ep.uport))
        assert vx.recv(ep.ucast)[0] == data[:100]
    finally:
        peer.close()


def test_foreign_datagrams_never_come_out(lan: vx.Lan, ep: vx.Endpoint) -> None:
    """Bad datagrams to both ports are dropped whole and counted; the
    caller's buffer is not touched."""
    f = ep.family
    peer = lan.peer_socket(f, (PEER[f], 0))
    bad = _bad_datagrams()
    before = vx.stats()["rx_dropped_header"]
    buf = bytearray(b"\xa5" * 4096)
    try:
        for d in bad:
            peer.sendto(d, (LOCAL[f], ep.uport))
            peer.sendto(d, ep.group)
        want = before + 2 * len(bad)

        def dropped_all() -> bool:
            for s in (ep.ucast, ep.mcast):
                with pytest.raises(BlockingIOError):
                    s.recv_into(buf, 0, socket.MSG_DONTWAIT)
                assert buf == bytearray(b"\xa5" * 4096), "a refused datagram reached the caller's buffer"
            return vx.stats()["rx_dropped_header"] >= want

        vx.wait_for(dropped_all, what="bad datagrams to be dropped")
        assert vx.stats()["rx_dropped_header"] == want
        # a good one behind them arrives intact, the rest of the buffer untouched
        good = vx.frame(100)
        peer.sendto(good, (LOCAL[f], ep.uport))
        ep.ucast.settimeout(10)
        n = ep.ucast.recv_into(buf)
        assert bytes(buf[:n]) == good
        assert buf[n:] == bytearray(b"\xa5" * (4096 - n))
    finally:
        peer.close()


def test_blocking_recv_skips_foreign_datagrams(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    peer = lan.peer_socket(f, (PEER[f], 0))
    box: dict[str, bytes] = {}

    def reader() -> None:
        box["data"] = ep.ucast.recv(65536)

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.3)
        for d in _bad_datagrams():
            peer.sendto(d, (LOCAL[f], ep.uport))
        time.sleep(0.3)
        assert t.is_alive(), "recv returned on a foreign datagram"
        good = vx.frame(200)
        peer.sendto(good, (LOCAL[f], ep.uport))
        t.join(10)
        assert not t.is_alive()
        assert box["data"] == good
    finally:
        if t.is_alive():
            peer.sendto(vx.frame(), (LOCAL[f], ep.uport))
            t.join(10)
        peer.close()


def test_truncation(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    peer = lan.peer_socket(f, (PEER[f], 0))
    try:
        data = vx.frame(200)
        peer.sendto(data, (LOCAL[f], ep.uport))
        ep.ucast.settimeout(10)
        got, _, flags, _ = ep.ucast.recvmsg(50)
        assert got == data[:50] and flags & socket.MSG_TRUNC
        peer.sendto(data, (LOCAL[f], ep.uport))
        buf = bytearray(50)
        assert ep.ucast.recv_into(buf, 50, socket.MSG_TRUNC) == 200
        assert bytes(buf) == data[:50]
        # shorter than a header: the whole header is still checked
        peer.sendto(data, (LOCAL[f], ep.uport))
        assert ep.ucast.recv(4) == data[:4]
    finally:
        peer.close()


def test_poll_epoll_nonblocking(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    peer = lan.peer_socket(f, (PEER[f], 0))
    ep.ucast.setblocking(False)
    ep_ = select.epoll()
    try:
        with pytest.raises(BlockingIOError):
            ep.ucast.recv(100)
        ep_.register(ep.ucast.fileno(), select.EPOLLIN)
        assert ep_.poll(0.2) == []
        p = select.poll()
        p.register(ep.ucast.fileno(), select.POLLOUT)
        assert p.poll(0) == [(ep.ucast.fileno(), select.POLLOUT)]

        box: dict[str, list[tuple[int, int]]] = {}
        t = threading.Thread(target=lambda: box.setdefault("ev", ep_.poll(10)))
        t.start()
        time.sleep(0.3)
        peer.sendto(vx.frame(), (LOCAL[f], ep.uport))
        t.join(15)
        assert box["ev"] == [(ep.ucast.fileno(), select.EPOLLIN)]
        assert ep.ucast.recv(100) == vx.frame()
        assert ep_.poll(0) == []
        # blocking socket, MSG_DONTWAIT per call
        ep.ucast.setblocking(True)
        with pytest.raises(BlockingIOError):
            ep.ucast.recv(100, socket.MSG_DONTWAIT)
    finally:
        ep_.close()
        peer.close()


def test_getsockname_and_autobind(lan: vx.Lan, family: int) -> None:
    f = family
    e = vx.endpoint(f)
    s = vx.vx_socket(f)
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    try:
        assert e.mcast.getsockname()[:2] == (GROUP[f], PORT)
        name = e.ucast.getsockname()
        assert name[0] == ANY[f] and name[1] > 0
        assert s.getsockname()[1] == 0
        s.sendto(vx.frame(), e.group)  # an unbound socket binds on first send
        port = s.getsockname()[1]
        assert port > 0
        assert vx.recv(peer)[1][1] == port
    finally:
        s.close()
        peer.close()
        e.close()


def test_two_endpoints_one_host(lan: vx.Lan, family: int) -> None:
    """Same gid on one host: they hear each other on the group and reach each
    other by unicast; another gid on the same host can do neither."""
    f = family
    a, b = vx.endpoint(f), vx.endpoint(f)
    c = vx.endpoint(f, gid=vx.OTHER_VNI)
    try:
        a.ucast.sendto(vx.frame(70), a.group)
        got, addr = vx.recv(b.mcast)
        assert got == vx.frame(70) and addr[1] == a.uport
        b.ucast.sendto(vx.frame(71), (addr[0], a.uport))
        got, addr = vx.recv(a.ucast)
        assert got == vx.frame(71) and addr[1] == b.uport
        with pytest.raises(BlockingIOError):
            c.mcast.recv(100, socket.MSG_DONTWAIT)
        with pytest.raises(PermissionError):
            c.ucast.sendto(vx.frame(72, vni=vx.OTHER_VNI), (LOCAL[f], a.uport))
    finally:
        for e in (a, b, c):
            e.close()


def test_udp_segment_send(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    try:
        segs = [vx.frame(500, fill=i) for i in range(4)] + [vx.frame(120, fill=9)]
        gso = [(vx.SOL_UDP, vx.UDP_SEGMENT, struct.pack("=H", 500))]
        assert ep.ucast.sendmsg([b"".join(segs)], gso, 0, ep.group) == 2120
        for want in segs:
            assert vx.recv(peer)[0] == want
        # the socket option works the same way, and is checked the same way
        ep.ucast.setsockopt(vx.SOL_UDP, vx.UDP_SEGMENT, 500)
        assert ep.ucast.getsockopt(vx.SOL_UDP, vx.UDP_SEGMENT) == 500
        ep.ucast.sendto(b"".join(segs[:2]), ep.group)
        assert [vx.recv(peer)[0] for _ in range(2)] == segs[:2]
        with pytest.raises(PermissionError):
            ep.ucast.sendto(segs[0] + vx.frame(500, vni=vx.OTHER_VNI), ep.group)
    finally:
        peer.close()


def _gro_read(s: socket.socket, total: int) -> tuple[bytes, list[int]]:
    data, sizes = b"", []
    buf = bytearray(65536)
    s.settimeout(10)
    try:
        while len(data) < total:
            n, anc, _, _ = s.recvmsg_into([buf], 64)  # as the data plane reads
            data += buf[:n]
            gro = [d for lvl, typ, d in anc if (lvl, typ) == (vx.SOL_UDP, vx.UDP_GRO)]
            sizes += [struct.unpack("=i", d)[0] for d in gro]
    finally:
        s.settimeout(None)
    return data, sizes


def test_udp_gro_receive(lan: vx.Lan, ep: vx.Endpoint) -> None:
    """A GSO train arrives as one GRO datagram; all its segments are checked,
    one foreign segment drops the whole datagram."""
    f = ep.family
    ep.ucast.setsockopt(vx.SOL_UDP, vx.UDP_GRO, 1)
    peer = lan.peer_socket(f, (PEER[f], 0))
    gso = [(vx.SOL_UDP, vx.UDP_SEGMENT, struct.pack("=H", 400))]
    dst = (LOCAL[f], ep.uport)
    try:
        good = b"".join(vx.frame(400, fill=i) for i in range(5))
        peer.sendmsg([good], gso, 0, dst)
        data, sizes = _gro_read(ep.ucast, len(good))
        assert data == good
        assert sizes == [400], "the train was not delivered as one GRO datagram"

        before = vx.stats()["rx_dropped_header"]
        bad = vx.frame(400) + vx.frame(400, vni=vx.OTHER_VNI) + vx.frame(400)
        peer.sendmsg([bad], gso, 0, dst)
        vx.wait_for(
            lambda: vx.drain(ep.ucast) == 0 and vx.stats()["rx_dropped_header"] == before + 1,
            what="the GRO datagram with a foreign segment to be dropped",
        )
        peer.sendmsg([good], gso, 0, dst)
        assert _gro_read(ep.ucast, len(good))[0] == good
    finally:
        peer.close()


def test_header_only_is_delivered(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    try:
        ep.ucast.sendto(vx.header(), ep.group)
        assert vx.recv(peer)[0] == vx.header()
        peer.sendto(vx.header(), ep.group)
        while True:  # our own looped-back leave may come first
            got, addr = vx.recv(ep.mcast)
            if addr[1] != ep.uport:
                break
        assert got == vx.header()
    finally:
        peer.close()


def test_sendmmsg_recvmmsg(lan: vx.Lan, ep: vx.Endpoint) -> None:
    """Batched system calls, as the data plane uses them (MSG_BATCH,
    MSG_WAITFORONE); a foreign datagram in the middle of a batch is skipped."""
    f = ep.family
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    try:
        frames = [vx.frame(100 + i, fill=i) for i in range(5)]
        assert vx.sendmmsg(ep.ucast, frames, vx.sockaddr(f, GROUP[f], PORT)) == 5
        assert [vx.recv(peer)[0] for _ in frames] == frames
        batch = [*frames[:2], vx.frame(90, vni=vx.OTHER_VNI), *frames[2:]]
        for d in batch:
            peer.sendto(d, (LOCAL[f], ep.uport))
        got: list[bytes] = []
        while len(got) < len(frames):
            select.select([ep.ucast], [], [], 10)
            got += vx.recvmmsg(ep.ucast, 8, 0x10000 | socket.MSG_DONTWAIT)  # MSG_WAITFORONE
        assert got == frames
    finally:
        peer.close()


def test_udp_gro_off_never_releases_a_merged_train(lan: vx.Lan, ep: vx.Endpoint) -> None:
    """The attack: a train with a foreign segment is merged while UDP_GRO is
    on; the owner switches UDP_GRO off and reads it as one datagram. Every
    segment must be checked whatever the option says now."""
    f = ep.family
    ep.ucast.setsockopt(vx.SOL_UDP, vx.UDP_GRO, 1)
    peer = lan.peer_socket(f, (PEER[f], 0))
    gso = [(vx.SOL_UDP, vx.UDP_SEGMENT, struct.pack("=H", 400))]
    mixed = vx.frame(400) + vx.frame(400, vni=vx.OTHER_VNI) + vx.frame(400)
    before = vx.stats()["rx_dropped_header"]
    got: list[bytes] = []
    try:
        peer.sendmsg([mixed], gso, 0, (LOCAL[f], ep.uport))
        assert select.select([ep.ucast], [], [], 10)[0], "the train never arrived"
        with contextlib.suppress(OSError):  # refusing to switch it off is a fix too
            ep.ucast.setsockopt(vx.SOL_UDP, vx.UDP_GRO, 0)

        def dropped() -> bool:
            with contextlib.suppress(BlockingIOError):
                got.append(ep.ucast.recv(65536, socket.MSG_DONTWAIT))
            return vx.stats()["rx_dropped_header"] > before

        vx.wait_for(dropped, what="the merged train to be dropped")
        assert got == [], "a datagram with a foreign segment was delivered"
    finally:
        peer.close()


def test_link_local_group_leaves_by_the_admins_interface(lan: vx.Lan) -> None:
    """ff02::/16 needs a scope: the caller's sin6_scope_id must not take the
    VLAN out of another interface than the module's ifindex (here the dummy
    vxkd0 instead of vxk0), neither on send nor through bind."""
    f = socket.AF_INET6
    group = "ff02::3e8"  # link-local, VNI 1000
    other = vx.ifindex("vxkd0")
    g = vx.vx_socket(f)
    g2 = vx.vx_socket(f)
    s = vx.vx_socket(f)
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
    peer = lan.peer_socket(f, (ANY[f], PORT))
    try:
        vx.join(peer, f, group, lan.peer_ifindex)
        cap.bind(("vxkd0", 0))
        g.bind((group, PORT, 0, lan.ifindex))
        g2.bind((group, PORT, 0, other))
        assert g2.getsockname()[3] == lan.ifindex, "bind took the caller's interface"
        s.bind((ANY[f], 0))
        data = vx.frame(77)
        s.sendto(data, (group, PORT, 0, other))
        assert vx.recv(peer)[0] == data
        with pytest.raises(BlockingIOError):
            while True:  # MLD and the like may leave by vxkd0, the VLAN may not
                pkt = cap.recv(65536, socket.MSG_DONTWAIT)
                assert data not in pkt, "the datagram left by the caller's interface"
    finally:
        for x in (g, g2, s, cap, peer):
            x.close()


def test_a_shared_group_stays_bound_until_its_last_socket(lan: vx.Lan, family: int) -> None:
    """Group sockets bound to one (VNI, group, port) share one binding entry,
    counted: sending to the group is allowed until the last of them closes."""
    f = family
    group = (GROUP[f], PORT)
    socks = [vx.vx_socket(f) for _ in range(5)]
    sender = vx.vx_socket(f)
    try:
        for s in socks:
            s.bind(group)
        for s in socks[:-1]:
            s.close()
            sender.sendto(vx.frame(), group)
        socks[-1].close()
        with pytest.raises(PermissionError):
            sender.sendto(vx.frame(), group)
    finally:
        for s in [*socks, sender]:
            s.close()
