"""The two sockets of an endpoint (PROTOCOL.md section 3).

A multicast socket bound to GROUP:PORT that only receives, and a unicast
socket on an ephemeral port from which every datagram leaves. Both are
AF_VXVDEX sockets when the kernel module is there (the kernel then pins
them to our egid's VLAN, whatever we do later) and plain UDP otherwise.
Everything above this module sees ordinary AF_INET/AF_INET6 sockets.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass, field

from vxvdex.dataplane.url import VxvdeUrl

log = logging.getLogger(__name__)

AF_VXVDEX = 13
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
IP_PKTINFO = 8
IPV6_RECVPKTINFO = 49
BUFFER_BYTES = 4 << 20


class TransportError(OSError):
    """The VLAN could not be joined; the message says why and what to do."""


@dataclass
class Transport:
    """An endpoint's sockets and what the kernel let us enable on them."""

    mcast: socket.socket
    ucast: socket.socket
    group: tuple
    port: int
    kind: str
    gso: bool = False
    gro: bool = False
    notes: list[str] = field(default_factory=list)
    url: VxvdeUrl | None = None   # for rejoin(); None: the kernel module keeps the membership

    def rejoin(self) -> bool:
        """Join the group again if the membership was lost (the uplink deleted
        and made again drops it): True if it had been. The join of the start,
        again: its membership setsockopt answers EADDRINUSE while we are a
        member and ends it there, so it may run every second."""
        if self.url is None:
            return False
        join = _join_v6 if self.url.family == socket.AF_INET6 else _join_v4
        try:
            join(self.mcast, self.ucast, self.url, _ifindex(self.url))
        except OSError:  # EADDRINUSE: still a member; ENODEV: no uplink (yet)
            return False
        return True

    def close(self) -> None:
        self.mcast.close()
        self.ucast.close()


def vxvdex_available(family: int = socket.AF_INET) -> bool:
    """Whether the af_vxvdex module answers for our egid."""
    try:
        socket.socket(AF_VXVDEX, socket.SOCK_DGRAM, family).close()
    except OSError:
        return False
    return True


def _new_socket(family: int, kernel: bool) -> socket.socket:
    if not kernel:
        return socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)
    raw = socket.socket(AF_VXVDEX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, family)
    # Python parses addresses by the socket's family: present it as AF_INET*.
    return socket.socket(family, socket.SOCK_DGRAM, 0, fileno=raw.detach())


def _set_buffer(sock: socket.socket, force: int, plain: int, notes: list[str]) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, BUFFER_BYTES)
        return
    except OSError:
        pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, plain, BUFFER_BYTES)
    except OSError as err:
        notes.append(f"socket buffer not raised: {err.strerror}")
        return
    got = sock.getsockopt(socket.SOL_SOCKET, plain) // 2
    if got < BUFFER_BYTES:
        notes.append(f"socket buffer capped at {got} bytes: raise net.core.rmem_max/wmem_max "
                     f"to {BUFFER_BYTES} or run with CAP_NET_ADMIN")


def _try_option(sock: socket.socket, level: int, name: int, value: int) -> bool:
    try:
        sock.setsockopt(level, name, value)
    except OSError:
        return False
    return True


def _ifindex(url: VxvdeUrl) -> int:
    if not url.ifname:
        return 0
    try:
        return socket.if_nametoindex(url.ifname)
    except OSError:
        raise TransportError(errno.ENODEV, f"if={url.ifname}: no such interface here "
                             "(give the uplink's name, see `ip link`)") from None


def _join_v4(mcast: socket.socket, ucast: socket.socket, url: VxvdeUrl, ifindex: int) -> None:
    mreqn = url.group.packed + bytes(4) + struct.pack("=i", ifindex)
    mcast.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    mcast.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    ucast.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, url.ttl)
    ucast.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, url.ttl)
    if ifindex:
        ucast.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, bytes(8) + struct.pack("=i", ifindex))


def _join_v6(mcast: socket.socket, ucast: socket.socket, url: VxvdeUrl, ifindex: int) -> None:
    mreq = url.group.packed + struct.pack("=I", ifindex)
    mcast.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    mcast.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    ucast.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, url.ttl)
    if ifindex:
        ucast.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)


def _bind(mcast: socket.socket, ucast: socket.socket, url: VxvdeUrl, kernel: bool) -> None:
    any_addr = "::" if url.family == socket.AF_INET6 else "0.0.0.0"
    if not kernel:  # AF_VXVDEX shares the group port by itself
        mcast.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        mcast.bind((str(url.group), url.port))
        ucast.bind((str(url.bind) if url.bind else any_addr, 0))
    except OSError as err:
        hint = (" (af_vxvdex binds groups only at the ports in /sys/module/af_vxvdex/parameters/ports)"
                if kernel and err.errno == errno.EACCES else "")
        raise TransportError(err.errno, f"cannot bind {url.group} port {url.port}: "
                             f"{err.strerror}{hint}") from None


def _open(url: VxvdeUrl, kernel: bool, ifindex: int) -> Transport:
    mcast = _new_socket(url.family, kernel)
    ucast = _new_socket(url.family, kernel)
    try:
        _bind(mcast, ucast, url, kernel)
        (_join_v6 if url.family == socket.AF_INET6 else _join_v4)(mcast, ucast, url, ifindex)
    except OSError as err:
        mcast.close()
        ucast.close()
        if isinstance(err, TransportError):
            raise
        raise TransportError(err.errno, f"cannot join {url.group}: {err.strerror} "
                             "(is there a multicast route? `ip route add 224.0.0.0/4 dev eth0`)") from None
    group = (str(url.group), url.port) + ((0, 0) if url.family == socket.AF_INET6 else ())
    kind = "AF_VXVDEX" if kernel else "UDP"
    return Transport(mcast, ucast, group, ucast.getsockname()[1], kind, url=None if kernel else url)


def _enable_offloads(t: Transport, url: VxvdeUrl) -> None:
    for sock, force, plain in ((t.mcast, SO_RCVBUFFORCE, socket.SO_RCVBUF),
                               (t.ucast, SO_RCVBUFFORCE, socket.SO_RCVBUF),
                               (t.ucast, SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        _set_buffer(sock, force, plain, t.notes)
    if url.rcvbuf:
        _try_option(t.ucast, socket.SOL_SOCKET, socket.SO_RCVBUF, url.rcvbuf)
    t.gro = _try_option(t.mcast, SOL_UDP, UDP_GRO, 1) & _try_option(t.ucast, SOL_UDP, UDP_GRO, 1)
    t.gso = probe_gso(t.ucast)
    if not t.gro:
        t.notes.append("UDP_GRO unavailable: one datagram per receive call")
    if not t.gso:
        t.notes.append("UDP_SEGMENT unavailable: one datagram per send call")


def probe_gso(sock: socket.socket) -> bool:
    """Whether sendmsg takes a UDP_SEGMENT control message on this socket."""
    try:
        size = sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return size >= 0


def open_transport(url: VxvdeUrl, mode: str = "auto") -> Transport:
    """Join url's VLAN. mode: auto (AF_VXVDEX if the kernel has it), vxvdex, udp."""
    if url.kernel_pinned:
        mode = "vxvdex"
    # The kernel keys AF_VXVDEX sockets on our egid: only that VLAN can use it.
    own_vlan = url.vni == os.getegid()
    kernel = mode == "vxvdex" or (mode == "auto" and own_vlan and vxvdex_available(url.family))
    if mode == "vxvdex" and not vxvdex_available(url.family):
        raise TransportError(errno.EAFNOSUPPORT, "AF_VXVDEX is not available: load the module "
                             "(`modprobe af_vxvdex`) and check that your egid is >= its mingid")
    if kernel and not own_vlan:
        raise TransportError(errno.EACCES, f"AF_VXVDEX only reaches the VLAN of your egid "
                             f"{os.getegid()}, not vni={url.vni}")
    ifindex = _ifindex(url)
    notes = []
    if kernel and ifindex:
        # The module joins and sends on the interface the administrator chose.
        notes.append(f"if={url.ifname} ignored: AF_VXVDEX uses the module's ifindex parameter")
        ifindex = 0
    t = _open(url, kernel, ifindex)
    t.notes.extend(notes)
    _enable_offloads(t, url)
    return t


def is_local_address(host: str, kernel: bool = False) -> bool:
    """Whether host is one of this namespace's addresses (bind succeeds).
    kernel: of the initial namespace instead, where AF_VXVDEX sockets send
    from whatever our namespace (the module lets them bind to exactly its
    local unicast addresses)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = _new_socket(family, kernel)
    except OSError:  # e.g. an egid below the module's mingid: ask our namespace
        probe = _new_socket(family, False)
    with probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True
