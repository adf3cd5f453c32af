"""Sockets that hold the vxvde port from before the bind guard: ended.

The bind program refuses binds from the moment it is attached; a socket
bound earlier (a user logged in while the package was installed, or while
port_guard was false) would go on reading every VLAN this host joins. So
when the guard is installed, the UDP sockets of this network namespace on
the port that the guard would refuse now are destroyed (SOCK_DESTROY, what
`ss -K` does): their owner's next recv() fails with ECONNABORTED.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import pwd
import socket
import struct
from collections.abc import Callable, Iterator

log = logging.getLogger("vxvdexd")
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, SOCK_DESTROY = 4, 20, 21
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSG = struct.Struct("=IHHII")
SOCKID = struct.Struct("!HH16s16s")          # ports and addresses; then ifindex and cookie, host order
DIAG_MSG = 4 + 48                            # family, state, timer, retrans, sockid; then 5 u32
Found = tuple[int, bytes, int, int, str]     # family, sockid, uid, inode, address


def _request(kind: int, flags: int, family: int, sockid: bytes) -> bytes:
    body = struct.pack("=BBBBI", family, socket.IPPROTO_UDP, 0, 0, 0xFFFFFFFF) + sockid
    return NLMSG.pack(NLMSG.size + len(body), kind, flags, 1, 0) + body


def _messages(nl: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of the answers, until DONE or an error answer."""
    while True:
        data = nl.recv(1 << 16)
        pos = 0
        while pos + NLMSG.size <= len(data):
            length, kind, _flags, _seq, _pid = NLMSG.unpack_from(data, pos)
            yield kind, data[pos + NLMSG.size:pos + length]
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                return
            pos += (length + 3) & ~3


def _on_port(nl: socket.socket, family: int, port: int) -> list[Found]:
    nl.send(_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, bytes(48)))
    found = []
    for kind, msg in _messages(nl):
        if kind != SOCK_DIAG_BY_FAMILY or len(msg) < DIAG_MSG + 20:
            continue
        sport, _dport, src, _dst = SOCKID.unpack_from(msg, 4)
        uid, inode = struct.unpack_from("=II", msg, DIAG_MSG + 12)
        if sport == port:
            raw = src[:4] if family == socket.AF_INET else src
            found.append((family, msg[4:DIAG_MSG], uid, inode, str(ipaddress.ip_address(raw))))
    return found


def _destroy(nl: socket.socket, family: int, sockid: bytes) -> int:
    """0, or the errno the kernel answered."""
    nl.send(_request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, family, sockid))
    for kind, msg in _messages(nl):
        if kind == NLMSG_ERROR:
            return -int(struct.unpack_from("=i", msg)[0])
    return 0


def holds(uid: int, gid: int) -> bool:
    """Whether uid's user has gid, as primary or supplementary group."""
    try:
        pw = pwd.getpwuid(uid)
        return gid in os.getgrouplist(pw.pw_name, pw.pw_gid)
    except (KeyError, OSError):
        return False


def end(port: int, allowed_uids: list[int], own_group: Callable[[int, str], bool]) -> int:
    """Destroy the sockets on port that the bind guard would refuse now;
    own_group(uid, address): whether address is the group of a gid uid holds.
    Returns how many were destroyed."""
    allowed, ended = {0, *allowed_uids}, 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as nl:
        for family in (socket.AF_INET, socket.AF_INET6):
            for fam, sockid, uid, inode, address in _on_port(nl, family, port):
                if uid in allowed or own_group(uid, address):
                    continue
                err = _destroy(nl, fam, sockid)
                if err:
                    log.warning("uid %d holds UDP port %d on %s from before the port guard (socket inode "
                                "%d) and it cannot be closed (%s): it reads the VLANs of this host until "
                                "that process ends", uid, port, address, inode, os.strerror(err))
                    if err == errno.EOPNOTSUPP:
                        return ended
                    continue
                log.warning("closed the socket of uid %d on UDP port %d (%s), bound before the port guard",
                            uid, port, address)
                ended += 1
    return ended
