"""A sender can stall the copy of its own datagram as long as it likes (a
userfaultfd or FUSE-backed page). Whatever authorised the destination
before the copy may be gone after it: the module must decide on the
destination after the copy, right before the send.

Here the destination is the VLAN's group, allowed only while a socket of
the VNI is bound to it; that socket closes while the copy hangs."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading

import vxkguest as vx
from vxkguest import ANY, GROUP, PORT

NR_USERFAULTFD = 323
UFFD_API = 0xAA
UFFDIO_API = 0xC018AA3F
UFFDIO_REGISTER = 0xC020AA00
UFFDIO_COPY = 0xC028AA03
UFFDIO_REGISTER_MODE_MISSING = 1
UFFD_EVENT_PAGEFAULT = 0x12
PAGE = 4096

# our own handle: the argument types below must not leak into vxkguest's
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, *[ctypes.c_int] * 3, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.sendto.argtypes = [
    ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint
]


def _ioctl(fd: int, req: int, arg: ctypes.Array[ctypes.c_char]) -> None:
    vx.check(libc.ioctl(fd, ctypes.c_ulong(req), arg), "ioctl")


class StalledPage:
    """One anonymous page whose first touch waits until fill() provides it."""

    def __init__(self) -> None:
        self.uffd = vx.check(libc.syscall(NR_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK), "userfaultfd")
        _ioctl(self.uffd, UFFDIO_API, ctypes.create_string_buffer(struct.pack("=QQQ", UFFD_API, 0, 0), 24))
        addr = libc.mmap(None, PAGE, 3, 0x22, -1, 0)  # RW, MAP_PRIVATE | MAP_ANONYMOUS
        assert addr not in (None, ctypes.c_void_p(-1).value), "mmap failed"
        self.addr: int = addr
        reg = struct.pack("=QQQQ", addr, PAGE, UFFDIO_REGISTER_MODE_MISSING, 0)
        _ioctl(self.uffd, UFFDIO_REGISTER, ctypes.create_string_buffer(reg, 32))

    def wait_fault(self, timeout: float = 20) -> None:
        assert select.select([self.uffd], [], [], timeout)[0], "nobody touched the page"
        msg = os.read(self.uffd, 32)
        assert msg[0] == UFFD_EVENT_PAGEFAULT, msg

    def fill(self, data: bytes) -> None:
        src = ctypes.create_string_buffer(data.ljust(PAGE, b"\0"), PAGE)
        arg = struct.pack("=QQQQq", self.addr, ctypes.addressof(src), PAGE, 0, 0)
        _ioctl(self.uffd, UFFDIO_COPY, ctypes.create_string_buffer(arg, 40))

    def close(self) -> None:
        libc.munmap(self.addr, PAGE)
        os.close(self.uffd)


def test_destination_checked_after_a_stalled_copy(lan: vx.Lan, family: int) -> None:
    f = family
    group = vx.vx_socket(f)  # what allows sending to the group
    group.bind((GROUP[f], PORT))
    sender = vx.vx_socket(f)
    sender.bind((ANY[f], 0))
    peer = lan.peer_socket(f, (ANY[f], PORT), group=True)
    page = StalledPage()
    data = vx.frame(64)
    dest = vx.sockaddr(f, GROUP[f], PORT)
    box: dict[str, int] = {}

    def send() -> None:
        n = libc.sendto(sender.fileno(), page.addr, len(data), 0, dest, len(dest))
        box["ret"] = n if n >= 0 else -ctypes.get_errno()

    t = threading.Thread(target=send)
    t.start()
    try:
        page.wait_fault()
        group.close()  # the group is no longer bound by the VNI
        page.fill(data)
        t.join(20)
        assert not t.is_alive(), "sendto never returned"
        assert box["ret"] == -13, f"sent to a destination no longer allowed: {box['ret']}"
    finally:
        if t.is_alive():
            page.fill(data)
            t.join(20)
        page.close()
        sender.close()
        group.close()
        peer.close()
