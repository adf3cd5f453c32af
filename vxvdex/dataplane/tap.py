"""The tap device, opened with a 10-byte virtio-net header on every frame.

Writes use the header to hand the namespace merged TCP super-frames (see
merge.py). Reads ask for no offload (TUNSETOFFLOAD 0): the kernel then
finishes checksums and cuts TSO super-frames in C before we see them, which
measured faster than doing the same per segment in Python, and every frame
we read is a plain wire frame.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
VNET_HDR_LEN = 10
VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_PLAIN = bytes(VNET_HDR_LEN)
GSO_TCPV4 = 1
GSO_TCPV6 = 4
GSO_UDP_L4 = 5  # USO: Linux 6.2 and later
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCGIFMTU, SIOCSIFMTU = 0x8921, 0x8922
SIOCGIFHWADDR, SIOCSIFHWADDR = 0x8927, 0x8924
IFF_UP = 0x1
ARPHRD_ETHER = 1


TUN_DEVICE = "/dev/net/tun"
TUN_HINTS = {
    errno.ENOENT: "load the tun module (`modprobe tun`) or create the device "
                  "(`mknod -m 0666 /dev/net/tun c 10 200`)",
    errno.ENODEV: "load the tun module (`modprobe tun`)",
    errno.EACCES: "run as root, or let users open it as Debian does: `chmod 0666 /dev/net/tun`",
    errno.EPERM: "the device is not allowed here (a container?): allow c 10:200",
}


class TapError(OSError):
    """The tap could not be opened or configured; the message says why."""


class Tap:
    """An open tap queue with a 10-byte virtio-net header on every frame."""

    def __init__(self, name: str, fd: int | None = None) -> None:
        """Attach to (or create) tap `name`, or adopt an already attached fd."""
        self.name = name
        self.fd = attach(name) if fd is None else fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def mtu(self) -> int:
        """The tap's MTU, read by name where we are; OSError once the tap has
        moved to another namespace (an interface there of the same name is
        told apart by its MAC address, which the tap's fd still reports)."""
        own = fcntl.ioctl(self.fd, SIOCGIFHWADDR, _ifreq(self.name))[18:24]
        if _ioctl(SIOCGIFHWADDR, _ifreq(self.name))[18:24] != own:
            raise OSError(errno.ENODEV, f"{self.name} is not our tap here")
        return interface_mtu(self.name)


def persist(fd: int, on: bool = True) -> None:
    """Keep the tap when its last descriptor closes (an endpoint restarting)."""
    fcntl.ioctl(fd, TUNSETPERSIST, int(on))


def attach(name: str) -> int:
    """Open a queue of tap `name` (creating it if needed): non-blocking, vnet header."""
    try:
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        hint = TUN_HINTS.get(err.errno or 0, "")
        raise TapError(err.errno, f"tap://{name}: cannot open {TUN_DEVICE}: {err.strerror}"
                       + (f" ({hint})" if hint else "")) from None
    ifr = struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
    except OSError as err:
        os.close(fd)
        hint = {errno.EPERM: "creating or attaching a tap needs CAP_NET_ADMIN or its owner's uid",
                errno.EBUSY: "another process holds this single-queue tap",
                errno.EINVAL: "an interface of another type has this name"}.get(err.errno or 0, "")
        raise TapError(err.errno, f"tap://{name}: {err.strerror}" + (f" ({hint})" if hint else "")) from None
    return fd


def _ifreq(name: str, value: bytes = b"") -> bytes:
    return struct.pack("16s16s", name.encode(), value)


def _ioctl(request: int, ifr: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        result: bytes = fcntl.ioctl(sock, request, ifr)
    return result


def interface_mtu(name: str) -> int:
    return int(struct.unpack_from("i", _ioctl(SIOCGIFMTU, _ifreq(name)), 16)[0])


def set_mtu(name: str, mtu: int) -> None:
    _ioctl(SIOCSIFMTU, _ifreq(name, struct.pack("i", mtu)))


def set_up(name: str, up: bool = True) -> None:
    flags = struct.unpack_from("H", _ioctl(SIOCGIFFLAGS, _ifreq(name)), 16)[0]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    _ioctl(SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags)))


def set_mac(name: str, mac: bytes) -> None:
    _ioctl(SIOCSIFHWADDR, _ifreq(name, struct.pack("H6s", ARPHRD_ETHER, mac)))
