"""The vxvde wire format: the 8-byte header and the group addresses.

Byte-compatible with vdeplug4's libvdeplug_vxvde (see PROTOCOL.md).
"""

from __future__ import annotations

import ipaddress

PORT = 14789
GROUP_V4 = ipaddress.IPv4Address("239.0.0.1")
GROUP_V6 = ipaddress.IPv6Address("ff05:56de::1")
DEFAULT_VNI = 1
DEFAULT_TTL = 1
HASHSIZE = 1024
EXPIRE_SECONDS = 128

HEADER_LEN = 8
ETH_HLEN = 14
VNI_FLAG = 0x08
# gids and VNIs are 24-bit on the wire; anything wider would alias two VLANs.
MAX_ID = (1 << 24) - 1


class WireError(ValueError):
    """A value that cannot be represented on the wire."""


def check_id(value: int, what: str = "gid") -> int:
    """Return value if it fits the 24 bits of a VNI / group tail, else raise."""
    if not 0 <= value <= MAX_ID:
        raise WireError(
            f"{what} {value} does not fit in 24 bits (0..{MAX_ID}); "
            "it cannot be mapped to a VLAN without aliasing another one"
        )
    return value


def header(vni: int) -> bytes:
    """The exact 8 bytes every datagram of VLAN `vni` starts with."""
    check_id(vni, "vni")
    return bytes((VNI_FLAG, 0, 0, 0)) + vni.to_bytes(3, "big") + b"\0"


def is_header(data: bytes | bytearray | memoryview, vni: int) -> bool:
    """True if data starts with the exact header of `vni`."""
    return bytes(data[:HEADER_LEN]) == header(vni)


def with_id_tail(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, gid: int
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Replace the last three bytes of addr by the 24-bit gid."""
    check_id(gid)
    packed = addr.packed[:-3] + gid.to_bytes(3, "big")
    return ipaddress.ip_address(packed)


def group_address(gid: int, v6: bool = False) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The multicast group of a gid: 239.0.0.1 / ff05:56de::1 with the gid as tail."""
    return with_id_tail(GROUP_V6 if v6 else GROUP_V4, gid)


def is_multicast_mac(mac: bytes | bytearray | memoryview) -> bool:
    """Group or broadcast MAC: lowest bit of the first byte set."""
    return bool(mac[0] & 1)
