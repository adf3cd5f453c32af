"""Values behind the permission table: TTL caps, SO_RCVBUF, SOL_SOCKET
options on 6.1, and the module parameters."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest
import vxkguest as vx
from vxkguest import ANY, PORT

HOPS: dict[int, tuple[int, int, int]] = {
    socket.AF_INET: (socket.IPPROTO_IP, socket.IP_TTL, socket.IP_MULTICAST_TTL),
    socket.AF_INET6: (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, socket.IPV6_MULTICAST_HOPS),
}


def test_ttl_caps(family: int) -> None:
    level, uni, multi = HOPS[family]
    s = vx.vx_socket(family)
    try:
        assert s.getsockopt(level, uni) == 1  # maxttl, not the kernel's 64
        assert s.getsockopt(level, multi) == 1
        for opt in (uni, multi):
            s.setsockopt(level, opt, 64)
            assert s.getsockopt(level, opt) == 1
        with vx.param("maxttl", "4"):
            t = vx.vx_socket(family)
            try:
                assert t.getsockopt(level, uni) == 4
                for value, want in ((3, 3), (5, 4), (255, 4), (-1, None)):
                    t.setsockopt(level, multi, value)
                    assert t.getsockopt(level, multi) == (1 if want is None else want)
                    t.setsockopt(level, uni, value)
                    assert t.getsockopt(level, uni) == (4 if want is None else want)
            finally:
                t.close()
    finally:
        s.close()


def _wire_ttl(lan: vx.Lan, ep: vx.Endpoint, peer: socket.socket) -> int:
    ep.ucast.sendto(vx.frame(), ep.group)
    peer.settimeout(10)
    _, anc, _, _ = peer.recvmsg(65536, 64)
    [(_, _, data)] = anc
    return int(struct.unpack("=i", data[:4])[0]) if len(data) >= 4 else data[0]


def test_ttl_on_the_wire(lan: vx.Lan, ep: vx.Endpoint) -> None:
    f = ep.family
    level, _, multi = HOPS[f]
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    try:
        if f == socket.AF_INET:
            peer.setsockopt(socket.IPPROTO_IP, vx.IP_RECVTTL, 1)
        else:
            peer.setsockopt(socket.IPPROTO_IPV6, vx.IPV6_RECVHOPLIMIT, 1)
        assert _wire_ttl(lan, ep, peer) == 1
        ep.ucast.setsockopt(level, multi, 200)
        assert _wire_ttl(lan, ep, peer) == 1
        with vx.param("maxttl", "4"):
            ep.ucast.setsockopt(level, multi, 3)
            assert _wire_ttl(lan, ep, peer) == 3
            ep.ucast.setsockopt(level, multi, 200)
            assert _wire_ttl(lan, ep, peer) == 4
    finally:
        peer.close()


def _lower_rcvbuf(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hnuam", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"rb(\d+)", out)
    assert m, out
    return int(m.group(1))


def test_rcvbuf_capped_and_effective(lan: vx.Lan, ep: vx.Endpoint) -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    ep.ucast.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    got = ep.ucast.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert got == 2 * min(4 << 20, rmem_max)
    with pytest.raises(BlockingIOError):  # 6.1 carries the value down here
        ep.ucast.recv(10, socket.MSG_DONTWAIT)
    assert _lower_rcvbuf(ep.uport) == got
    with vx.param_file("/proc/sys/net/core/rmem_max", str(8 << 20)):
        ep.ucast.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        with pytest.raises(BlockingIOError):
            ep.ucast.recv(10, socket.MSG_DONTWAIT)
        assert _lower_rcvbuf(ep.uport) == 8 << 20


def test_sol_socket_options_refused_or_inert(lan: vx.Lan, ep: vx.Endpoint) -> None:
    """6.12 refuses them. 6.1 hands SOL_SOCKET options to the core, which sets
    them on the AF_VXVDEX socket's own sock: traffic must not notice."""
    f = ep.family
    opts: list[tuple[int, int | bytes]] = [
        (vx.SO_BINDTODEVICE, b"lo"),
        (36, 7),
        (socket.SO_REUSEPORT, 1),
        (socket.SO_BROADCAST, 1),
    ]
    if vx.sol_socket_filtered():
        for name, value in opts:
            with pytest.raises(OSError) as e:
                ep.ucast.setsockopt(socket.SOL_SOCKET, name, value)
            assert e.value.errno == 92  # ENOPROTOOPT
        return
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    try:
        for name, value in opts:
            with contextlib.suppress(OSError):  # SO_REUSEPORT: the core says EOPNOTSUPP
                ep.ucast.setsockopt(socket.SOL_SOCKET, name, value)
        ep.ucast.sendto(vx.frame(90), ep.group)  # bound to lo, it could not leave on vxk0
        assert vx.recv(peer)[0] == vx.frame(90)
        out = subprocess.run(["ss", "-Hnuae", f"sport = :{ep.uport}"], capture_output=True, text=True).stdout
        assert "%lo" not in out, out
    finally:
        peer.close()


@pytest.mark.parametrize(
    ("name", "bad", "good"),
    [
        ("maxttl", ["0", "256", "-1", "x"], ["1", "255"]),
        ("mingid", ["16777216", "-1", "x"], ["0", "16777215", "1000"]),
        ("ifindex", ["-1", "2147483648", "x"], ["0", "999"]),
        ("maxgid", ["16777216", "-1", "x"], ["0", "16777215", "59999"]),
        ("maxsockets", ["0", "-1", "x", "1048577"], ["1", "1048576", "64"]),
        (
            "ports",
            ["0", "65536", "x", "1,2,3,4,5", "14789,", "1,,2"],
            ["1", "65535", "14789,14790", "1,2,3,4", "14789"],
        ),
    ],
)
def test_params_validated(name: str, bad: list[str], good: list[str]) -> None:
    old = vx.get_param(name)
    try:
        for value in bad:
            with pytest.raises(OSError) as e:
                vx.set_param(name, value)
            assert e.value.errno == 22, value
            assert vx.get_param(name) == old
        for value in good:
            vx.set_param(name, value)
            assert vx.get_param(name) == value
    finally:
        vx.set_param(name, old)


def test_mingid_param() -> None:
    def make() -> None:
        import os

        os.setresgid(999, 999, 999)
        socket.socket(vx.AF_VXVDEX, socket.SOCK_DGRAM, socket.AF_INET).close()

    with pytest.raises(PermissionError):
        vx.in_child(make)
    with vx.param("mingid", "500"):
        vx.in_child(make)
