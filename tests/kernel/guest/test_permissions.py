"""The AF_VXVDEX permission table: one row per (call, arguments, expected
errno), one parametrized test that runs them all, for IPv4 and IPv6.

Expected values are errno numbers, 0 meaning success. Rows marked
sol_socket concern SOL_SOCKET options: kernels without SOCK_CUSTOM_SOCKOPT
(6.1) apply those to the AF_VXVDEX socket's own, inert struct sock before
the family sees them, so there the call succeeds (test_sockopt.py checks
that it has no effect).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from errno import (
    EACCES,
    EADDRNOTAVAIL,
    EAFNOSUPPORT,
    EAGAIN,
    EDESTADDRREQ,
    EINVAL,
    EMSGSIZE,
    ENOPROTOOPT,
    ENOTCONN,
    EOPNOTSUPP,
    EPERM,
    EPROTONOSUPPORT,
    ESOCKTNOSUPPORT,
)
from typing import Any

import pytest
import vxkguest as vx
from vxkguest import ANY, GROUP, LOCAL, LOCAL2, LOOPBACK, OTHER_GROUP, PEER, PORT, UNKNOWN

V4, V6 = socket.AF_INET, socket.AF_INET6
SOL_IP, SOL_IPV6, SOL_SOCKET = socket.IPPROTO_IP, socket.IPPROTO_IPV6, socket.SOL_SOCKET


class Ctx:
    """What a row acts on: the test LAN, an endpoint, sockets made on demand."""

    def __init__(self, lan: vx.Lan, family: int) -> None:
        self.lan = lan
        self.family = family
        self._ep: vx.Endpoint | None = None
        self.extra: list[socket.socket] = []

    @property
    def ep(self) -> vx.Endpoint:
        if self._ep is None:
            self._ep = vx.endpoint(self.family)
        return self._ep

    def sock(self, gid: int = vx.VNI) -> socket.socket:
        s = vx.vx_socket(self.family, gid)
        self.extra.append(s)
        return s

    def plain_peer(self) -> socket.socket:
        s = self.lan.peer_socket(self.family, (PEER[self.family], 0))
        self.extra.append(s)
        return s

    def close(self) -> None:
        if self._ep:
            self._ep.close()
        for s in self.extra:
            s.close()

    # -- destinations, by name --

    def peer_that_sent(self, data: bytes) -> tuple[str, int]:
        """A peer socket that sent data to our unicast socket (and we read it)."""
        p = self.plain_peer()
        before = vx.stats()["rx_dropped_header"]
        p.sendto(data, (LOCAL[self.family], self.ep.uport))
        if data[:8] == vx.header() and len(data) >= 8:
            vx.recv(self.ep.ucast)
        else:
            vx.wait_for(lambda: vx.drain(self.ep.ucast) >= 0 and vx.stats()["rx_dropped_header"] > before)
        return (PEER[self.family], p.getsockname()[1])

    def dest(self, name: str) -> tuple[Any, ...]:
        f = self.family
        if name == "group":
            return self.ep.group
        if name == "group_other_port":
            self.ep  # noqa: B018 - the group socket is bound at PORT only
            return (GROUP[f], PORT + 1)
        if name == "other_group":
            self.ep  # noqa: B018
            return (OTHER_GROUP[f], PORT)
        if name == "other_group_bound_by_other_vni":
            other = vx.endpoint(f, gid=vx.OTHER_VNI)
            self.extra += [other.mcast, other.ucast]
            return (OTHER_GROUP[f], PORT)
        if name == "loopback":
            return (LOOPBACK[f], self.ep.uport)
        if name == "loopback_bound_same_vni":
            s = self.sock()
            s.bind((ANY[f], 0))
            return (LOOPBACK[f], s.getsockname()[1])
        if name == "local_unbound":
            return (LOCAL[f], 9)
        if name == "local_bound_same_vni":
            s = self.sock()
            s.bind((ANY[f], 0))
            return (LOCAL[f], s.getsockname()[1])
        if name == "local2_bound_same_vni_wildcard":
            s = self.sock()
            s.bind((ANY[f], 0))
            return (LOCAL2[f], s.getsockname()[1])
        if name == "local2_bound_same_vni_other_addr":
            s = self.sock()
            s.bind((LOCAL[f], 0))
            return (LOCAL2[f], s.getsockname()[1])
        if name == "local_bound_other_vni":
            s = self.sock(vx.OTHER_VNI)
            s.bind((ANY[f], 0))
            return (LOCAL[f], s.getsockname()[1])
        if name == "local_plain_socket":
            p = socket.socket(f, socket.SOCK_DGRAM)
            self.extra.append(p)
            p.bind((LOCAL[f], 0))
            return (LOCAL[f], p.getsockname()[1])
        if name == "learned_peer":
            return self.peer_that_sent(vx.frame())
        if name == "learned_peer_other_port":
            addr, port = self.peer_that_sent(vx.frame())
            return (addr, port + 1)
        if name == "peer_sent_foreign_vni":
            return self.peer_that_sent(vx.frame(vni=vx.OTHER_VNI))
        if name == "peer_sent_leave":
            dest = self.peer_that_sent(vx.frame())
            p = self.extra[-1]
            p.sendto(vx.header(), (LOCAL[f], self.ep.uport))
            assert vx.recv(self.ep.ucast)[0] == vx.header()
            return dest
        if name == "unknown_peer":
            return (UNKNOWN[f], 5555)
        if name == "any":
            return (ANY[f], self.ep.uport)
        if name == "v4mapped":
            return ("::ffff:192.0.2.2", 5555)
        if name == "limited_broadcast":
            return ("255.255.255.255", PORT)
        if name == "subnet_broadcast":
            return ("192.0.2.127", PORT)
        raise KeyError(name)


# ---- calls ----------------------------------------------------------------


def create(
    ctx: Ctx,
    gid: int = vx.VNI,
    type: int = socket.SOCK_DGRAM,
    proto: int | None = None,
    groups: tuple[int, ...] = (),
) -> None:
    """socket() in a forked child with real, effective and saved gid set."""
    proto = ctx.family if proto is None else proto

    def child() -> None:
        import os

        os.setgroups(list(groups))
        os.setresgid(gid, gid, gid)
        socket.socket(vx.AF_VXVDEX, type, proto).close()

    vx.in_child(child)


def bind(
    ctx: Ctx, addr: str | None = None, port: int = 0, raw: bytes | None = None, twice: bool = False
) -> None:
    s = ctx.sock()
    if raw is not None:
        vx.raw_bind(s, raw)
        return
    if twice:
        s.bind((ANY[ctx.family], 0))
    s.bind((addr, port))


def membership(
    ctx: Ctx,
    group: str,
    drop: bool = False,
    level: int | None = None,
    raw: bytes | None = None,
    name: int | None = None,
) -> None:
    s = ctx.sock()
    if raw is not None:
        assert level is not None and name is not None
        s.setsockopt(level, name, raw)
        return
    if drop:
        vx.join(s, ctx.family, GROUP[ctx.family])
    vx.join(s, ctx.family, group, index=1, drop=drop)


def setopt(ctx: Ctx, level: int, name: int, value: int | bytes) -> None:
    ctx.sock().setsockopt(level, name, value)


def getopt(ctx: Ctx, level: int, name: int) -> None:
    ctx.sock().getsockopt(level, name)


def send(
    ctx: Ctx,
    dest: str = "group",
    data: bytes | None = None,
    cmsgs: list[tuple[int, int, bytes]] | None = None,
    flags: int = 0,
    raw: bytes | None = None,
    noaddr: bool = False,
) -> None:
    data = vx.frame() if data is None else data
    s = ctx.ep.ucast
    if raw is not None:
        vx.raw_sendto(s, data, raw, flags)
    elif noaddr:
        s.send(data, flags)
    else:
        s.sendmsg([data], cmsgs or [], flags, ctx.dest(dest))


def recvflags(ctx: Ctx, flags: int) -> None:
    ctx.ep.ucast.recv(64, flags | socket.MSG_DONTWAIT)


def op(ctx: Ctx, name: str) -> None:
    s = ctx.ep.ucast
    f = ctx.family
    calls: dict[str, Callable[[], Any]] = {
        "connect": lambda: s.connect((PEER[f], 5555)),
        "listen": lambda: s.listen(1),
        "accept": lambda: s.accept(),
        "shutdown": lambda: s.shutdown(socket.SHUT_RDWR),
        "getpeername": lambda: s.getpeername(),
        "getsockname": lambda: s.getsockname(),
        "ioctl_inq": lambda: __import__("fcntl").ioctl(s.fileno(), 0x541B, b"\0\0\0\0"),
    }
    calls[name]()


# ---- the table ------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    desc: str
    call: Callable[..., None]
    args: dict[str, Any] = field(default_factory=dict)
    expect: int = 0
    family: int | None = None  # None: both families
    sol_socket: bool = False
    unfiltered: int = 0  # the core's answer where SOL_SOCKET is not filtered

    def expected(self) -> int:
        if self.sol_socket and not vx.sol_socket_filtered():
            return self.unfiltered
        return self.expect


def seg(n: int, vni: int = vx.VNI) -> bytes:
    return vx.frame(n, vni=vni)


def gso(size: int) -> list[tuple[int, int, bytes]]:
    return [(vx.SOL_UDP, vx.UDP_SEGMENT, struct.pack("=H", size))]


PKTINFO4 = struct.pack("=i4s4s", 0, socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.129"))
PKTINFO6 = socket.inet_pton(V6, "2001:db8::1") + struct.pack("=i", 0)
INT1 = struct.pack("=i", 1)

ROWS: list[Row] = [
    # socket(): type, protocol, the caller's egid
    Row("socket SOCK_DGRAM as gid 1000", create),
    Row("socket SOCK_STREAM", create, {"type": socket.SOCK_STREAM}, ESOCKTNOSUPPORT),
    Row("socket SOCK_RAW", create, {"type": socket.SOCK_RAW}, ESOCKTNOSUPPORT),
    Row("socket SOCK_SEQPACKET", create, {"type": socket.SOCK_SEQPACKET}, ESOCKTNOSUPPORT),
    Row("socket protocol 0", create, {"proto": 0}, EPROTONOSUPPORT),
    Row("socket protocol IPPROTO_UDP", create, {"proto": 17}, EPROTONOSUPPORT),
    Row("socket protocol AF_UNIX", create, {"proto": 1}, EPROTONOSUPPORT),
    Row("socket egid 999 (below mingid)", create, {"gid": 999}, EPERM),
    Row("socket egid 0", create, {"gid": 0}, EPERM),
    Row("socket egid 999 with supplementary group 1000", create, {"gid": 999, "groups": (1000,)}, EPERM),
    Row("socket egid 2^24-1", create, {"gid": (1 << 24) - 1}),
    Row("socket egid 2^24", create, {"gid": 1 << 24}, EPERM),
    Row("socket egid 2^24+1000 (would alias VNI 1000)", create, {"gid": (1 << 24) + 1000}, EPERM),
    Row("socket egid 2^32-2", create, {"gid": (1 << 32) - 2}, EPERM),
    # bind(): a port only on the VNI's groups, port 0 on local unicast
    Row("bind own group with port", bind, {"addr": "239.0.3.232", "port": PORT}, family=V4),
    Row("bind own group, other prefix", bind, {"addr": "238.0.3.232", "port": PORT}, family=V4),
    Row("bind own group with port", bind, {"addr": "ff05:56de::3e8", "port": PORT}, family=V6),
    Row("bind own group, other prefix", bind, {"addr": "ff15::3e8", "port": PORT}, family=V6),
    Row("bind other VNI's group", bind, {"addr": "239.0.3.233", "port": PORT}, EACCES, V4),
    Row("bind other VNI's group", bind, {"addr": "ff05:56de::3e9", "port": PORT}, EACCES, V6),
    Row("bind group with port 0", bind, {"addr": "239.0.3.232", "port": 0}, EACCES, V4),
    Row("bind group with port 0", bind, {"addr": "ff05:56de::3e8", "port": 0}, EACCES, V6),
    Row("bind wildcard with port", bind, {"addr": "0.0.0.0", "port": PORT}, EACCES, V4),
    Row("bind wildcard with port", bind, {"addr": "::", "port": PORT}, EACCES, V6),
    Row("bind local address with port", bind, {"addr": "192.0.2.1", "port": 5555}, EACCES, V4),
    Row("bind local address with port", bind, {"addr": "2001:db8::1", "port": 5555}, EACCES, V6),
    Row("bind wildcard port 0", bind, {"addr": "0.0.0.0"}, family=V4),
    Row("bind wildcard port 0", bind, {"addr": "::"}, family=V6),
    Row("bind local address port 0", bind, {"addr": "192.0.2.1"}, family=V4),
    Row("bind local address port 0", bind, {"addr": "2001:db8::1"}, family=V6),
    Row("bind loopback port 0", bind, {"addr": "127.0.0.1"}, EACCES, V4),
    Row("bind loopback port 0", bind, {"addr": "::1"}, EACCES, V6),
    Row("bind v4-mapped port 0", bind, {"addr": "::ffff:192.0.2.1"}, EACCES, V6),
    Row("bind limited broadcast", bind, {"addr": "255.255.255.255"}, EACCES, V4),
    Row("bind subnet broadcast", bind, {"addr": "192.0.2.127"}, EACCES, V4),
    Row("bind foreign unicast address", bind, {"addr": "192.0.2.99"}, EADDRNOTAVAIL, V4),
    Row("bind foreign unicast address", bind, {"addr": "2001:db8::99"}, EADDRNOTAVAIL, V6),
    Row("bind twice", bind, {"addr": "0.0.0.0", "twice": True}, EINVAL, V4),
    Row("bind twice", bind, {"addr": "::", "twice": True}, EINVAL, V6),
    Row("bind IPv6 sockaddr on IPv4 socket", bind, {"raw": vx.sockaddr(V6, "::", 0)}, EAFNOSUPPORT, V4),
    Row(
        "bind IPv4 sockaddr on IPv6 socket",
        bind,
        {"raw": vx.sockaddr(V4, "0.0.0.0", 0) + bytes(12)},
        EAFNOSUPPORT,
        V6,
    ),
    Row("bind short sockaddr", bind, {"raw": vx.sockaddr(V4, "0.0.0.0", 0)[:8]}, EINVAL, V4),
    Row("bind short sockaddr", bind, {"raw": vx.sockaddr(V6, "::", 0)[:16]}, EINVAL, V6),
    # multicast membership: only the VNI's groups
    Row("join own group (ip_mreqn, ifindex forced)", membership, {"group": "239.0.3.232"}, family=V4),
    Row(
        "join own group (ip_mreq)",
        membership,
        {
            "group": "",
            "level": SOL_IP,
            "name": socket.IP_ADD_MEMBERSHIP,
            "raw": socket.inet_aton("239.0.3.232") + bytes(4),
        },
        family=V4,
    ),
    Row("join own group", membership, {"group": "ff05:56de::3e8"}, family=V6),
    Row("join other VNI's group", membership, {"group": "239.0.3.233"}, EACCES, V4),
    Row("join other VNI's group", membership, {"group": "ff05:56de::3e9"}, EACCES, V6),
    Row("join all-hosts group", membership, {"group": "224.0.0.1"}, EACCES, V4),
    Row("join all-nodes group", membership, {"group": "ff02::1"}, EACCES, V6),
    Row(
        "join with short ip_mreq",
        membership,
        {
            "group": "",
            "level": SOL_IP,
            "name": socket.IP_ADD_MEMBERSHIP,
            "raw": socket.inet_aton("239.0.3.232"),
        },
        EINVAL,
        V4,
    ),
    Row("leave own group", membership, {"group": "239.0.3.232", "drop": True}, family=V4),
    Row("leave own group", membership, {"group": "ff05:56de::3e8", "drop": True}, family=V6),
    Row("leave other VNI's group", membership, {"group": "239.0.3.233", "drop": True}, EACCES, V4),
    Row("leave other VNI's group", membership, {"group": "ff05:56de::3e9", "drop": True}, EACCES, V6),
    Row("MCAST_JOIN_GROUP", setopt, {"level": SOL_IP, "name": 42, "value": bytes(136)}, ENOPROTOOPT, V4),
    Row(
        "IP_ADD_SOURCE_MEMBERSHIP", setopt, {"level": SOL_IP, "name": 39, "value": bytes(12)}, ENOPROTOOPT, V4
    ),
    Row(
        "IP_ADD_MEMBERSHIP on an IPv6 socket",
        setopt,
        {
            "level": SOL_IP,
            "name": socket.IP_ADD_MEMBERSHIP,
            "value": socket.inet_aton("239.0.3.232") + bytes(4),
        },
        ENOPROTOOPT,
        V6,
    ),
    # setsockopt: the whitelist
    Row("SO_RCVBUF 4 MiB", setopt, {"level": SOL_SOCKET, "name": socket.SO_RCVBUF, "value": 4 << 20}),
    Row("IP_TTL 1", setopt, {"level": SOL_IP, "name": socket.IP_TTL, "value": 1}, family=V4),
    Row("IP_TTL 64 (capped)", setopt, {"level": SOL_IP, "name": socket.IP_TTL, "value": 64}, family=V4),
    Row("IP_TTL -1 (default)", setopt, {"level": SOL_IP, "name": socket.IP_TTL, "value": -1}, family=V4),
    Row("IP_TTL 0", setopt, {"level": SOL_IP, "name": socket.IP_TTL, "value": 0}, EINVAL, V4),
    Row("IP_TTL 256", setopt, {"level": SOL_IP, "name": socket.IP_TTL, "value": 256}, EINVAL, V4),
    Row(
        "IP_MULTICAST_TTL 1",
        setopt,
        {"level": SOL_IP, "name": socket.IP_MULTICAST_TTL, "value": 1},
        family=V4,
    ),
    Row(
        "IP_MULTICAST_TTL 1 as a byte",
        setopt,
        {"level": SOL_IP, "name": socket.IP_MULTICAST_TTL, "value": b"\x01"},
        family=V4,
    ),
    Row(
        "IP_MULTICAST_TTL 32 (capped)",
        setopt,
        {"level": SOL_IP, "name": socket.IP_MULTICAST_TTL, "value": 32},
        family=V4,
    ),
    Row("IP_PKTINFO", setopt, {"level": SOL_IP, "name": vx.IP_PKTINFO, "value": 1}, family=V4),
    Row(
        "IPV6_MULTICAST_HOPS 1",
        setopt,
        {"level": SOL_IPV6, "name": socket.IPV6_MULTICAST_HOPS, "value": 1},
        family=V6,
    ),
    Row(
        "IPV6_MULTICAST_HOPS 32 (capped)",
        setopt,
        {"level": SOL_IPV6, "name": socket.IPV6_MULTICAST_HOPS, "value": 32},
        family=V6,
    ),
    Row(
        "IPV6_MULTICAST_HOPS 256",
        setopt,
        {"level": SOL_IPV6, "name": socket.IPV6_MULTICAST_HOPS, "value": 256},
        EINVAL,
        V6,
    ),
    Row(
        "IPV6_UNICAST_HOPS 1",
        setopt,
        {"level": SOL_IPV6, "name": socket.IPV6_UNICAST_HOPS, "value": 1},
        family=V6,
    ),
    Row("IPV6_RECVPKTINFO", setopt, {"level": SOL_IPV6, "name": vx.IPV6_RECVPKTINFO, "value": 1}, family=V6),
    Row("UDP_SEGMENT 1400", setopt, {"level": vx.SOL_UDP, "name": vx.UDP_SEGMENT, "value": 1400}),
    Row("UDP_SEGMENT 65536", setopt, {"level": vx.SOL_UDP, "name": vx.UDP_SEGMENT, "value": 65536}, EINVAL),
    Row("UDP_GRO", setopt, {"level": vx.SOL_UDP, "name": vx.UDP_GRO, "value": 1}),
    # setsockopt: everything else is refused
    Row(
        "SO_BINDTODEVICE",
        setopt,
        {"level": SOL_SOCKET, "name": vx.SO_BINDTODEVICE, "value": b"lo"},
        ENOPROTOOPT,
        sol_socket=True,
    ),
    Row(
        "SO_REUSEPORT",
        setopt,
        {"level": SOL_SOCKET, "name": socket.SO_REUSEPORT, "value": 1},
        ENOPROTOOPT,
        sol_socket=True,
        unfiltered=EOPNOTSUPP,  # the core refuses it for non-inet socks,
    ),
    Row(
        "SO_REUSEADDR",
        setopt,
        {"level": SOL_SOCKET, "name": socket.SO_REUSEADDR, "value": 1},
        ENOPROTOOPT,
        sol_socket=True,
    ),
    Row(
        "SO_SNDBUF",
        setopt,
        {"level": SOL_SOCKET, "name": socket.SO_SNDBUF, "value": 1 << 20},
        ENOPROTOOPT,
        sol_socket=True,
    ),
    Row(
        "SO_BROADCAST",
        setopt,
        {"level": SOL_SOCKET, "name": socket.SO_BROADCAST, "value": 1},
        ENOPROTOOPT,
        sol_socket=True,
    ),
    Row("SO_MARK", setopt, {"level": SOL_SOCKET, "name": 36, "value": 7}, ENOPROTOOPT, sol_socket=True),
    Row("SO_PRIORITY", setopt, {"level": SOL_SOCKET, "name": 12, "value": 6}, ENOPROTOOPT, sol_socket=True),
    Row(
        "IP_MULTICAST_IF",
        setopt,
        {"level": SOL_IP, "name": socket.IP_MULTICAST_IF, "value": bytes(12)},
        ENOPROTOOPT,
        V4,
    ),
    Row(
        "IP_MULTICAST_LOOP",
        setopt,
        {"level": SOL_IP, "name": socket.IP_MULTICAST_LOOP, "value": 0},
        ENOPROTOOPT,
        V4,
    ),
    Row("IP_HDRINCL", setopt, {"level": SOL_IP, "name": socket.IP_HDRINCL, "value": 1}, ENOPROTOOPT, V4),
    Row("IP_TOS", setopt, {"level": SOL_IP, "name": socket.IP_TOS, "value": 0x10}, ENOPROTOOPT, V4),
    Row(
        "IP_OPTIONS", setopt, {"level": SOL_IP, "name": socket.IP_OPTIONS, "value": bytes(4)}, ENOPROTOOPT, V4
    ),
    Row("IP_FREEBIND", setopt, {"level": SOL_IP, "name": 15, "value": 1}, ENOPROTOOPT, V4),
    Row("IP_TRANSPARENT", setopt, {"level": SOL_IP, "name": 19, "value": 1}, ENOPROTOOPT, V4),
    Row(
        "IP_MULTICAST_ALL",
        setopt,
        {"level": SOL_IP, "name": vx.IP_MULTICAST_ALL, "value": 1},
        ENOPROTOOPT,
        V4,
    ),
    Row(
        "IP_TTL on an IPv6 socket",
        setopt,
        {"level": SOL_IP, "name": socket.IP_TTL, "value": 1},
        ENOPROTOOPT,
        V6,
    ),
    Row(
        "IPV6_MULTICAST_IF",
        setopt,
        {"level": SOL_IPV6, "name": socket.IPV6_MULTICAST_IF, "value": 1},
        ENOPROTOOPT,
        V6,
    ),
    Row(
        "IPV6_MULTICAST_LOOP",
        setopt,
        {"level": SOL_IPV6, "name": socket.IPV6_MULTICAST_LOOP, "value": 0},
        ENOPROTOOPT,
        V6,
    ),
    Row("IPV6_V6ONLY", setopt, {"level": SOL_IPV6, "name": socket.IPV6_V6ONLY, "value": 0}, ENOPROTOOPT, V6),
    Row("IPV6_TCLASS", setopt, {"level": SOL_IPV6, "name": 67, "value": 0x10}, ENOPROTOOPT, V6),
    Row("UDP_CORK", setopt, {"level": vx.SOL_UDP, "name": 1, "value": 1}, ENOPROTOOPT),
    Row("UDP_ENCAP", setopt, {"level": vx.SOL_UDP, "name": 100, "value": 1}, ENOPROTOOPT),
    # getsockopt: reads pass through
    Row(
        "getsockopt IP_MULTICAST_LOOP", getopt, {"level": SOL_IP, "name": socket.IP_MULTICAST_LOOP}, family=V4
    ),
    Row("getsockopt IPV6_V6ONLY", getopt, {"level": SOL_IPV6, "name": socket.IPV6_V6ONLY}, family=V6),
    Row("getsockopt UDP_SEGMENT", getopt, {"level": vx.SOL_UDP, "name": vx.UDP_SEGMENT}),
    Row(
        "getsockopt IP_TTL on an IPv6 socket",
        getopt,
        {"level": SOL_IP, "name": socket.IP_TTL},
        ENOPROTOOPT,
        V6,
    ),
    # send: the header of the kernel's own copy
    Row("send right header to own group", send),
    Row("send header only (leave)", send, {"data": vx.header()}),
    Row("send other VNI's header", send, {"data": seg(64, vx.OTHER_VNI)}, EACCES),
    Row("send wrong flags byte", send, {"data": vx.header(flags=0x0C) + bytes(56)}, EACCES),
    Row("send VNI-less flags byte", send, {"data": vx.header(flags=0x00) + bytes(56)}, EACCES),
    Row(
        "send non-zero reserved byte 2",
        send,
        {"data": b"\x08\x00\x01\x00\x00\x03\xe8\x00" + bytes(56)},
        EACCES,
    ),
    Row("send non-zero last header byte", send, {"data": vx.header()[:7] + b"\x01" + bytes(56)}, EACCES),
    Row("send 7 bytes", send, {"data": vx.header()[:7]}, EACCES),
    Row("send 0 bytes", send, {"data": b""}, EACCES),
    Row("send 65536 bytes", send, {"data": seg(65536)}, EMSGSIZE),
    Row("send without address", send, {"noaddr": True}, EDESTADDRREQ),
    Row(
        "send IPv6 sockaddr on IPv4 socket",
        send,
        {"raw": vx.sockaddr(V6, "ff05:56de::3e8", PORT)},
        EAFNOSUPPORT,
        V4,
    ),
    Row(
        "send IPv4 sockaddr on IPv6 socket",
        send,
        {"raw": vx.sockaddr(V4, "239.0.3.232", PORT) + bytes(12)},
        EAFNOSUPPORT,
        V6,
    ),
    Row("send short sockaddr", send, {"raw": vx.sockaddr(V4, "239.0.3.232", PORT)[:8]}, EINVAL, V4),
    Row("send MSG_OOB", send, {"flags": socket.MSG_OOB}, EOPNOTSUPP),
    Row("send MSG_MORE (corking)", send, {"flags": 0x8000}, EOPNOTSUPP),
    Row("send MSG_CONFIRM", send, {"flags": 0x800}, EOPNOTSUPP),
    Row("send MSG_DONTWAIT", send, {"flags": socket.MSG_DONTWAIT}),
    # send: control messages (only UDP_SEGMENT, every segment headed)
    Row("cmsg IP_TTL", send, {"cmsgs": [(SOL_IP, socket.IP_TTL, struct.pack("=i", 64))]}, EACCES, V4),
    Row("cmsg IP_PKTINFO (source address)", send, {"cmsgs": [(SOL_IP, vx.IP_PKTINFO, PKTINFO4)]}, EACCES, V4),
    Row(
        "cmsg IPV6_HOPLIMIT",
        send,
        {"cmsgs": [(SOL_IPV6, vx.IPV6_HOPLIMIT, struct.pack("=i", 64))]},
        EACCES,
        V6,
    ),
    Row(
        "cmsg IPV6_PKTINFO (source address)",
        send,
        {"cmsgs": [(SOL_IPV6, vx.IPV6_PKTINFO, PKTINFO6)]},
        EACCES,
        V6,
    ),
    Row("cmsg SCM_RIGHTS", send, {"cmsgs": [(SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=i", 0))]}, EACCES),
    Row("cmsg UDP_SEGMENT, all segments headed", send, {"data": seg(100) * 3, "cmsgs": gso(100)}),
    Row("cmsg UDP_SEGMENT, last segment shorter", send, {"data": seg(100) * 2 + seg(40), "cmsgs": gso(100)}),
    Row(
        "cmsg UDP_SEGMENT, middle segment foreign",
        send,
        {"data": seg(100) + seg(100, vx.OTHER_VNI) + seg(100), "cmsgs": gso(100)},
        EACCES,
    ),
    Row(
        "cmsg UDP_SEGMENT, middle segment headerless",
        send,
        {"data": seg(100) + bytes(100) + seg(100), "cmsgs": gso(100)},
        EACCES,
    ),
    Row(
        "cmsg UDP_SEGMENT, last segment under 8 bytes",
        send,
        {"data": seg(100) * 2 + b"\x08\0\0", "cmsgs": gso(100)},
        EACCES,
    ),
    Row("cmsg UDP_SEGMENT, segment size 4", send, {"data": seg(100), "cmsgs": gso(4)}, EACCES),
    Row(
        "cmsg UDP_SEGMENT as an int",
        send,
        {"data": seg(100) * 2, "cmsgs": [(vx.SOL_UDP, vx.UDP_SEGMENT, INT1)]},
        EACCES,
    ),
    # send: destinations
    Row("to own group, bound port", send, {"dest": "group"}),
    Row("to own group, another port", send, {"dest": "group_other_port"}, EACCES),
    Row("to another VNI's group", send, {"dest": "other_group"}, EACCES),
    Row(
        "to another VNI's group, bound by that VNI", send, {"dest": "other_group_bound_by_other_vni"}, EACCES
    ),
    Row("to loopback", send, {"dest": "loopback"}, EACCES),
    Row("to loopback, port bound by same VNI", send, {"dest": "loopback_bound_same_vni"}, EACCES),
    Row("to own address, no AF_VXVDEX socket there", send, {"dest": "local_unbound"}, EACCES),
    Row("to own address, plain UDP socket there", send, {"dest": "local_plain_socket"}, EACCES),
    Row("to own address, bound by same VNI", send, {"dest": "local_bound_same_vni"}),
    Row("to own 2nd address, same VNI bound to wildcard", send, {"dest": "local2_bound_same_vni_wildcard"}),
    Row(
        "to own 2nd address, same VNI bound to the 1st",
        send,
        {"dest": "local2_bound_same_vni_other_addr"},
        EACCES,
    ),
    Row("to own address, bound by another VNI", send, {"dest": "local_bound_other_vni"}, EACCES),
    Row("to a peer that sent valid datagrams", send, {"dest": "learned_peer"}),
    Row("to a learned peer's other port", send, {"dest": "learned_peer_other_port"}, EACCES),
    Row("to a peer that sent another VNI's datagram", send, {"dest": "peer_sent_foreign_vni"}, EACCES),
    Row("to a peer that sent a leave", send, {"dest": "peer_sent_leave"}, EACCES),
    Row("to an unknown peer", send, {"dest": "unknown_peer"}, EACCES),
    Row("to the unspecified address", send, {"dest": "any"}, EACCES),
    Row("to a v4-mapped address", send, {"dest": "v4mapped"}, EACCES, V6),
    Row("to the limited broadcast", send, {"dest": "limited_broadcast"}, EACCES, V4),
    Row("to a subnet broadcast", send, {"dest": "subnet_broadcast"}, EACCES, V4),
    # receive flags and the rest of proto_ops
    Row("recv MSG_DONTWAIT, nothing queued", recvflags, {"flags": 0}, EAGAIN),
    Row("recv MSG_PEEK", recvflags, {"flags": socket.MSG_PEEK}, EOPNOTSUPP),
    Row("recv MSG_OOB", recvflags, {"flags": socket.MSG_OOB}, EOPNOTSUPP),
    Row("recv MSG_ERRQUEUE", recvflags, {"flags": socket.MSG_ERRQUEUE}, EOPNOTSUPP),
    Row("connect", op, {"name": "connect"}, EOPNOTSUPP),
    Row("listen", op, {"name": "listen"}, EOPNOTSUPP),
    Row("accept", op, {"name": "accept"}, EOPNOTSUPP),
    Row("shutdown", op, {"name": "shutdown"}, EOPNOTSUPP),
    Row("getpeername", op, {"name": "getpeername"}, ENOTCONN),
    Row("getsockname", op, {"name": "getsockname"}),
    Row("ioctl SIOCINQ", op, {"name": "ioctl_inq"}),
]


def cases() -> Iterator[Any]:
    for fam, fid in zip(vx.FAMILIES, vx.FAMILY_IDS, strict=True):
        for row in ROWS:
            if row.family in (None, fam):
                yield pytest.param(fam, row, id=f"{fid}: {row.desc}")


@pytest.fixture
def ctx(lan: vx.Lan, request: pytest.FixtureRequest) -> Iterator[Ctx]:
    c = Ctx(lan, request.node.callspec.params["fam"])
    yield c
    c.close()


@pytest.mark.parametrize(("fam", "row"), list(cases()))
def test_permission(ctx: Ctx, fam: int, row: Row) -> None:
    got = vx.errno_of(lambda: row.call(ctx, **row.args))
    want = row.expected()
    assert vx.ename(got) == vx.ename(want), f"{row.desc}: got {vx.ename(got)}, want {vx.ename(want)}"
