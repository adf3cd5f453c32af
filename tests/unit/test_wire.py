"""The 8-byte header and gid -> group address mapping (PROTOCOL.md 1-2)."""

import ipaddress

import pytest

from vxvdex.dataplane import wire


def test_header_is_vxlan_with_vni_big_endian() -> None:
    assert wire.header(1000) == bytes([0x08, 0, 0, 0, 0x00, 0x03, 0xE8, 0])
    assert wire.header(0xABCDEF) == bytes([0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0])


def test_is_header_compares_all_eight_bytes() -> None:
    good = wire.header(1000)
    assert wire.is_header(good + b"frame", 1000)
    for i in range(8):
        bad = bytearray(good)
        bad[i] ^= 0x01
        assert not wire.is_header(bytes(bad), 1000), f"byte {i} flipped was accepted"


@pytest.mark.parametrize(("gid", "v4", "v6"), [
    (0, "239.0.0.0", "ff05:56de::"),
    (148, "239.0.0.148", "ff05:56de::94"),
    (1000, "239.0.3.232", "ff05:56de::3e8"),
    ((1 << 24) - 1, "239.255.255.255", "ff05:56de::ff:ffff"),
])
def test_group_address(gid: int, v4: str, v6: str) -> None:
    assert wire.group_address(gid) == ipaddress.ip_address(v4)
    assert wire.group_address(gid, v6=True) == ipaddress.ip_address(v6)


@pytest.mark.parametrize("gid", [1 << 24, (1 << 24) + 1000, 1 << 31, -1])
def test_gids_beyond_24_bits_are_refused_not_truncated(gid: int) -> None:
    with pytest.raises(wire.WireError, match="24 bits"):
        wire.group_address(gid)
    with pytest.raises(wire.WireError):
        wire.header(gid)


def test_multicast_mac() -> None:
    assert wire.is_multicast_mac(b"\xff" * 6)
    assert wire.is_multicast_mac(b"\x01\x00\x5e\x00\x00\x01")
    assert not wire.is_multicast_mac(b"\x02\x00\x00\x00\x00\x01")
