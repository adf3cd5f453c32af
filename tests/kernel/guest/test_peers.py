"""The learned-peer table that the unicast rule consults (peer.c): this
host's own addresses are never learned (any local user can forge a
datagram from them), and one VLAN's traffic cannot evict another VLAN's
peers however many sources it sends from."""

from __future__ import annotations

import select
import socket
import struct

import vxkguest as vx
from vxkguest import LOCAL, LOCAL2, PEER

FLOOD_SOURCES = 20000  # 2.5 times the old table (1024 buckets of 8)
BATCH = 128


def test_local_sources_are_never_learned(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    plain = socket.socket(f, socket.SOCK_DGRAM)  # any local user may do this
    try:
        plain.bind((LOCAL2[f], 0))
        before = vx.stats()["peers"]
        plain.sendto(vx.frame(), (LOCAL[f], ep.uport))
        assert vx.recv(ep.ucast)[0] == vx.frame()
        assert vx.stats()["peers"] == before, "a local source was learned"
    finally:
        plain.close()


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload  # no checksum (IPv4)


def _flood(lan: vx.Lan, victim: vx.Endpoint) -> None:
    """FLOOD_SOURCES valid datagrams of the victim's VNI, each from another
    source port of the peer, all received (and so learned) by the victim."""
    raw = vx.setns_thread(
        vx.PEER_NS, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    )
    dest = vx.sockaddr(socket.AF_INET, LOCAL[socket.AF_INET], 0)
    payload = vx.frame(40, vni=vx.OTHER_VNI)
    try:
        for first in range(10000, 10000 + FLOOD_SOURCES, BATCH):
            batch = [_udp(p, victim.uport, payload) for p in range(first, first + BATCH)]
            assert vx.sendmmsg(raw, batch, dest) == BATCH
            got = 0
            while got < BATCH:
                assert select.select([victim.ucast], [], [], 10)[0], f"only {got} of {BATCH} arrived"
                got += len(vx.recvmmsg(victim.ucast, BATCH, socket.MSG_DONTWAIT, size=64))
    finally:
        raw.close()


def test_one_vlan_cannot_evict_anothers_peers(lan: vx.Lan) -> None:
    f = socket.AF_INET
    a = vx.endpoint(f)
    b = vx.endpoint(f, gid=vx.OTHER_VNI)
    peer = lan.peer_socket(f, (PEER[f], 0))
    try:
        peer.sendto(vx.frame(), (LOCAL[f], a.uport))
        assert vx.recv(a.ucast)[0] == vx.frame()
        dest = peer.getsockname()
        a.ucast.sendto(vx.frame(50), dest)  # learned: allowed
        assert vx.recv(peer)[0] == vx.frame(50)
        evicted = vx.stats()["peers_evicted"]
        _flood(lan, b)
        a.ucast.sendto(vx.frame(51), dest)  # EACCES if VNI 1001 evicted it
        assert vx.recv(peer)[0] == vx.frame(51)
        assert vx.stats()["peers"] < FLOOD_SOURCES
        print(f"flood: {vx.stats()['peers_evicted'] - evicted} evictions")
    finally:
        peer.close()
        a.close()
        b.close()
