"""Helpers for the AF_VXVDEX guest tests: sockets as a given gid, raw system
calls that Python's socket module cannot express, the module's counters and
parameters, and a small test LAN.

    guest init_net (AF_VXVDEX lower sockets live here)     netns PEER_NS
    vxk0 192.0.2.1/24 2001:db8::1/64  <---- veth ---->  vxk1 192.0.2.2/24 2001:db8::2/64
    dummy vxkd0 192.0.2.129/25 (a second own address)

The guest is thrown away after the run; the fixture still removes what it made.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

AF_VXVDEX = 13
VNI = 1000
OTHER_VNI = 1001
PORT = 14789
PEER_NS = "vxkt-peer"
GROUP: dict[int, str] = {socket.AF_INET: "239.0.3.232", socket.AF_INET6: "ff05:56de::3e8"}
OTHER_GROUP: dict[int, str] = {socket.AF_INET: "239.0.3.233", socket.AF_INET6: "ff05:56de::3e9"}
LOCAL: dict[int, str] = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
LOCAL2: dict[int, str] = {socket.AF_INET: "192.0.2.129", socket.AF_INET6: "2001:db8:1::1"}
PEER: dict[int, str] = {socket.AF_INET: "192.0.2.2", socket.AF_INET6: "2001:db8::2"}
UNKNOWN: dict[int, str] = {socket.AF_INET: "192.0.2.3", socket.AF_INET6: "2001:db8::3"}
LOOPBACK: dict[int, str] = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
ANY: dict[int, str] = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}
FAMILIES = [socket.AF_INET, socket.AF_INET6]
FAMILY_IDS = ["v4", "v6"]

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_BINDTODEVICE = 25
IP_MULTICAST_ALL = 49
IP_PKTINFO = 8
IP_RECVTTL = 12
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
PARAMS = Path("/sys/module/af_vxvdex/parameters")
STATS = Path("/proc/net/vxvdex")

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
T = TypeVar("T")


def header(vni: int = VNI, flags: int = 0x08) -> bytes:
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"


def frame(n: int = 64, vni: int = VNI, fill: int = 0x5A) -> bytes:
    """A datagram of n bytes: the header, then a recognisable body."""
    return header(vni) + bytes((fill + i) & 0xFF for i in range(n - 8))


# ---- identities -----------------------------------------------------------


@contextlib.contextmanager
def egid(gid: int) -> Iterator[None]:
    """Run the block with this effective gid (root can switch both ways)."""
    old = os.getegid()
    os.setresgid(-1, gid, -1)
    try:
        yield
    finally:
        os.setresgid(-1, old, -1)


def vx_socket(family: int, gid: int = VNI) -> socket.socket:
    """An AF_VXVDEX socket wrapped as the data plane does it."""
    with egid(gid):
        fd = socket.socket(AF_VXVDEX, socket.SOCK_DGRAM, family).detach()
    return socket.socket(family, socket.SOCK_DGRAM, 0, fileno=fd)


def in_child(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run fn in a forked child; return its result or re-raise its OSError."""
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            out: tuple[str, Any] = ("ok", fn())
        except OSError as e:
            out = ("oserror", (e.errno, str(e)))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = ("error", repr(e))
        with os.fdopen(w, "wb") as f:
            pickle.dump(out, f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "oserror":
        raise OSError(value[0], value[1])
    if kind == "error":
        raise RuntimeError(f"child failed: {value}")
    return value


# ---- raw system calls -----------------------------------------------------


def check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def sockaddr(family: int, addr: str, port: int, scope: int = 0) -> bytes:
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack(">H", port) + socket.inet_aton(addr) + bytes(8)
    return (
        struct.pack("=H", family)
        + struct.pack(">HI", port, 0)
        + socket.inet_pton(socket.AF_INET6, addr)
        + struct.pack("=I", scope)
    )


def raw_bind(s: socket.socket, raw: bytes) -> None:
    check(libc.bind(s.fileno(), raw, len(raw)), "bind")


def raw_sendto(s: socket.socket, data: bytes, raw: bytes | None, flags: int = 0) -> int:
    return check(
        libc.sendto(s.fileno(), data, len(data), flags, raw, len(raw) if raw else 0),
        "sendto",
    )


def setns_thread(name: str, fn: Callable[[], T]) -> T:
    """Run fn in a thread that entered netns name (setns is per thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            check(libc.setns(fd, 0x40000000), "setns")
            box["v"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["e"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]  # type: ignore[no-any-return]


def delete_module(name: str = "af_vxvdex") -> None:
    check(libc.syscall(176, name.encode(), os.O_NONBLOCK), "delete_module")


def load_module(path: str, params: str = "") -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        check(libc.syscall(313, fd, params.encode(), 0), "finit_module")
    finally:
        os.close(fd)


def module_loaded() -> bool:
    return Path("/sys/module/af_vxvdex/initstate").exists()


# ---- module state ---------------------------------------------------------


def stats() -> dict[str, int]:
    out = {}
    for line in STATS.read_text().splitlines():
        k, v = line.split()
        out[k] = int(v)
    return out


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def get_param(name: str) -> str:
    return (PARAMS / name).read_text().strip()


def set_param(name: str, value: str) -> None:
    with open(PARAMS / name, "w") as f:
        f.write(value)


@contextlib.contextmanager
def param(name: str, value: str) -> Iterator[None]:
    old = get_param(name)
    set_param(name, value)
    try:
        yield
    finally:
        set_param(name, old)


@contextlib.contextmanager
def param_file(path: str, value: str) -> Iterator[None]:
    p = Path(path)
    old = p.read_text().strip()
    p.write_text(value)
    try:
        yield
    finally:
        p.write_text(old)


def sol_socket_filtered() -> bool:
    """False on kernels (6.1) where SOL_SOCKET options bypass the family."""
    return stats()["sol_socket_filter"] == 1


# ---- the test LAN ---------------------------------------------------------


def sh(*args: str) -> None:
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")


def ifindex(name: str, netns: str | None = None) -> int:
    if netns is None:
        return socket.if_nametoindex(name)
    return setns_thread(netns, lambda: socket.if_nametoindex(name))


@dataclass
class Lan:
    ifindex: int
    peer_ifindex: int

    def peer_socket(
        self, family: int, bind: tuple[Any, ...] | None = None, group: bool = False
    ) -> socket.socket:
        """A plain root UDP socket in the peer namespace."""

        def make() -> socket.socket:
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET:
                s.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_MULTICAST_IF,
                    struct.pack("=4s4si", bytes(4), bytes(4), self.peer_ifindex),
                )
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.peer_ifindex)
            if bind:
                s.bind(bind)
            if group:
                join(s, family, GROUP[family], self.peer_ifindex)
            return s

        return setns_thread(PEER_NS, make)

    def packet_socket(self) -> socket.socket:
        """Captures every IP packet arriving on the peer's end of the wire."""

        def make() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
            s.bind(("vxk1", 0))
            return s

        return setns_thread(PEER_NS, make)


def join(s: socket.socket, family: int, group: str, index: int = 0, drop: bool = False) -> None:
    if family == socket.AF_INET:
        opt = socket.IP_DROP_MEMBERSHIP if drop else socket.IP_ADD_MEMBERSHIP
        s.setsockopt(socket.IPPROTO_IP, opt, socket.inet_aton(group) + bytes(4) + struct.pack("=i", index))
    else:
        opt = socket.IPV6_LEAVE_GROUP if drop else socket.IPV6_JOIN_GROUP
        s.setsockopt(socket.IPPROTO_IPV6, opt, socket.inet_pton(family, group) + struct.pack("=i", index))


def setup_lan() -> Lan:
    teardown_lan()
    sh("ip", "netns", "add", PEER_NS)
    sh("ip", "link", "add", "vxk0", "type", "veth", "peer", "name", "vxk1", "netns", PEER_NS)
    sh("ip", "addr", "add", "192.0.2.1/25", "dev", "vxk0")
    sh("ip", "addr", "add", "2001:db8::1/64", "dev", "vxk0", "nodad")
    sh("ip", "link", "set", "vxk0", "up")
    sh("ip", "link", "add", "vxkd0", "type", "dummy")
    sh("ip", "addr", "add", "192.0.2.129/25", "dev", "vxkd0")
    sh("ip", "addr", "add", "2001:db8:1::1/64", "dev", "vxkd0", "nodad")
    sh("ip", "link", "set", "vxkd0", "up")
    sh("ip", "route", "add", "224.0.0.0/4", "dev", "vxk0")
    n = ["ip", "-n", PEER_NS]
    sh(*n, "link", "set", "lo", "up")
    sh(*n, "addr", "add", "192.0.2.2/25", "dev", "vxk1")
    sh(*n, "addr", "add", "2001:db8::2/64", "dev", "vxk1", "nodad")
    sh(*n, "link", "set", "vxk1", "up")
    sh(*n, "route", "add", "224.0.0.0/4", "dev", "vxk1")
    lan = Lan(ifindex("vxk0"), ifindex("vxk1", PEER_NS))
    set_param("ifindex", str(lan.ifindex))
    wait_for(lambda: link_up("vxk0") and link_up("vxk1", PEER_NS), 60, "the test LAN's links to come up")
    return lan


def link_up(name: str, netns: str | None = None) -> bool:
    """Carrier on and operstate UP, i.e. the kernel's link watcher has handled
    the carrier: until then a veth transmits into the noop qdisc, which drops
    every packet while sendmsg reports success. vxk0 and vxk1 are both
    ifindex 2 in a fresh guest, which makes that event a non-urgent one,
    handled up to a second (on a loaded TCG guest: longer) later."""
    cmd = ["ip", *(["-n", netns] if netns else []), "-o", "link", "show", "dev", name]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return "LOWER_UP" in out and "state UP" in out


def teardown_lan() -> None:
    if module_loaded():
        set_param("ifindex", "0")
    for args in (
        ["ip", "link", "del", "vxk0"],
        ["ip", "link", "del", "vxkd0"],
        ["ip", "netns", "del", PEER_NS],
    ):
        subprocess.run(args, capture_output=True)


# ---- endpoints ------------------------------------------------------------


@dataclass
class Endpoint:
    """The two sockets of one vxvde endpoint, as the data plane opens them."""

    family: int
    mcast: socket.socket
    ucast: socket.socket

    @property
    def group(self) -> tuple[str, int]:
        return (GROUP[self.family], PORT)

    @property
    def uport(self) -> int:
        return int(self.ucast.getsockname()[1])

    def close(self) -> None:
        self.mcast.close()
        self.ucast.close()


def endpoint(family: int, gid: int = VNI, port: int = PORT) -> Endpoint:
    mcast = vx_socket(family, gid)
    group = GROUP[family] if gid == VNI else OTHER_GROUP[family]
    mcast.bind((group, port))
    join(mcast, family, group)
    if family == socket.AF_INET:
        mcast.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    else:
        mcast.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    ucast = vx_socket(family, gid)
    ucast.bind((ANY[family], 0))
    return Endpoint(family, mcast, ucast)


def recv(s: socket.socket, size: int = 65536, timeout: float = 10.0) -> tuple[bytes, Any]:
    s.settimeout(timeout)
    try:
        data, addr = s.recvfrom(size)
    finally:
        s.settimeout(None)
    return data, addr


def drain(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            s.recv(65536, socket.MSG_DONTWAIT)
            n += 1
        except BlockingIOError:
            return n


def errno_of(fn: Callable[[], Any]) -> int:
    """0 if fn succeeds, else the errno of the OSError it raised."""
    try:
        fn()
    except OSError as e:
        assert e.errno is not None, e
        return e.errno
    return 0


def ename(e: int) -> str:
    return "success" if e == 0 else errno.errorcode.get(e, str(e))


# ---- sendmmsg / recvmmsg (the data plane batches through ctypes) ----------


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def sendmmsg(s: socket.socket, datagrams: list[bytes], dest: bytes) -> int:
    n = len(datagrams)
    bufs = [ctypes.create_string_buffer(d, len(d)) for d in datagrams]
    iovs = (_Iovec * n)(
        *[_Iovec(ctypes.cast(b, ctypes.c_void_p), len(d)) for b, d in zip(bufs, datagrams, strict=True)]
    )
    name = ctypes.create_string_buffer(dest, len(dest))
    msgs = (_Mmsghdr * n)()
    for i in range(n):
        msgs[i].hdr.name = ctypes.cast(name, ctypes.c_void_p)
        msgs[i].hdr.namelen = len(dest)
        msgs[i].hdr.iov = ctypes.pointer(iovs[i])
        msgs[i].hdr.iovlen = 1
    return check(libc.sendmmsg(s.fileno(), msgs, n, 0), "sendmmsg")


def recvmmsg(s: socket.socket, n: int, flags: int = 0, size: int = 65536) -> list[bytes]:
    bufs = [ctypes.create_string_buffer(size) for _ in range(n)]
    iovs = (_Iovec * n)(*[_Iovec(ctypes.cast(b, ctypes.c_void_p), size) for b in bufs])
    msgs = (_Mmsghdr * n)()
    for i in range(n):
        msgs[i].hdr.iov = ctypes.pointer(iovs[i])
        msgs[i].hdr.iovlen = 1
    got = check(libc.recvmmsg(s.fileno(), msgs, n, flags, None), "recvmmsg")
    return [bufs[i].raw[: msgs[i].len] for i in range(got)]
