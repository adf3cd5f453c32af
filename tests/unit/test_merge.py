"""Receive-side merging of TCP segments into one tap write (merge.py)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from vxvdex.dataplane.checksum import finish, partial
from vxvdex.dataplane.merge import Merger
from vxvdex.dataplane.tap import GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR

SRC, DST = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
MACS = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1])
OPTS = bytes([1, 1, 8, 10]) + bytes(range(8))  # NOP NOP timestamps


def tcp_checksum_ok(ip_and_tcp: bytes) -> bool:
    ihl = (ip_and_tcp[0] & 15) * 4
    tcp = ip_and_tcp[ihl:]
    pseudo = ip_and_tcp[12:20] + bytes([0, 6]) + struct.pack("!H", len(tcp))
    return partial(pseudo + tcp) == 0


def segment(seq: int, payload: bytes, flags: int = 0x10, sport: int = 1000, ack: int = 7) -> bytes:
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, 2000, seq, ack, (8 << 4), flags, 500, 0, 0) + OPTS)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), seq & 0xFFFF,
                               0x4000, 64, 6, 0, SRC, DST))
    struct.pack_into("!H", ip, 10, finish(partial(ip)))
    pseudo = SRC + DST + bytes([0, 6]) + struct.pack("!H", len(tcp) + len(payload))
    struct.pack_into("!H", tcp, 16, finish(partial(pseudo + tcp + payload)))
    return MACS + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload


@pytest.fixture
def tap() -> Iterator[tuple[Merger, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)
    yield Merger(a.fileno()), b
    a.close()
    b.close()


def written(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(1 << 17))
        except BlockingIOError:
            return out


def feed(m: Merger, frames: list[bytes]) -> None:
    for f in frames:
        m.add(memoryview(bytearray(f)))
    m.flush()


def test_in_order_segments_become_one_valid_super_frame(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    payloads = [os.urandom(1398) for _ in range(9)] + [os.urandom(501)]  # odd tail
    seqs = [1000 + 1398 * i for i in range(10)]
    feed(m, [segment(s, p) for s, p in zip(seqs, payloads, strict=True)])
    (w,) = written(out)
    flags, gso_type, hdr_len, gso_size, _cs, _co = VNET_HDR.unpack_from(w)
    assert (flags, gso_type, hdr_len, gso_size) == (0, GSO_TCPV4, 14 + 20 + 32, 1398)
    frame = w[10:]
    assert frame[:12] == MACS
    ip = frame[14:]
    assert struct.unpack_from("!H", ip, 2)[0] == len(ip) == 20 + 32 + sum(map(len, payloads))
    assert partial(ip[:20]) == 0, "IP header checksum"
    assert tcp_checksum_ok(ip), "TCP checksum of the merged frame"
    assert ip[52:] == b"".join(payloads)
    assert struct.unpack_from("!I", ip, 24)[0] == 1000
    assert m.merged == 10


def test_a_corrupt_segment_makes_the_merged_checksum_fail(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    frames = [bytearray(segment(1000 + 1400 * i, os.urandom(1400))) for i in range(5)]
    frames[2][-100] ^= 0x40  # payload damaged after the sender checksummed it
    feed(m, [bytes(f) for f in frames])
    (w,) = written(out)
    assert not tcp_checksum_ok(w[10 + 14:]), "corruption must reach the kernel's verification"


def test_flows_sequence_gaps_and_push_split_runs(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    p = os.urandom(1000)
    frames = [segment(0, p), segment(1000, p, sport=1001), segment(1000, p),   # other flow in between
              segment(5000, p), segment(6000, p, flags=0x18), segment(7000, p)]  # gap; PSH ends a run
    feed(m, frames)
    got = written(out)
    assert [len(w) - 10 for w in got] == [len(frames[0]), len(frames[1]), len(frames[2]),
                                          len(frames[3]) + 1000, len(frames[5])]
    for w in got:
        assert tcp_checksum_ok(w[24:])


def test_other_traffic_is_written_as_is_and_in_order(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    udp = MACS + b"\x08\x00" + bytes(40)
    arp = MACS + b"\x08\x06" + bytes(28)
    syn = segment(0, b"", flags=0x02)
    frames = [segment(0, b"x" * 100), udp, arp, syn]
    feed(m, frames)
    got = written(out)
    assert [w[10:] for w in got] == frames
    assert all(w[:10] == bytes(10) for w in got)


def test_disabled_merger_writes_every_frame(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    m.enabled = False
    feed(m, [segment(1000 * i, bytes(1000)) for i in range(4)])
    assert len(written(out)) == 4


def test_runs_from_verified_datagrams_are_handed_over_checksum_partial(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    payloads = [os.urandom(1000) for _ in range(4)]
    for i, p in enumerate(payloads):
        m.add(memoryview(bytearray(segment(1000 * i, p))), verified=True)
    m.flush()
    (w,) = written(out)
    flags, gso, _hl, _gs, cstart, coff = VNET_HDR.unpack_from(w)
    assert (flags, gso, cstart, coff) == (1, GSO_TCPV4, 34, 16)  # NEEDS_CSUM at the TCP checksum
    # What a NIC (or the kernel's software fallback) would compute is right:
    frame = bytearray(w[10:])
    struct.pack_into("!H", frame, 34 + 16, finish(partial(frame[34:])))
    assert tcp_checksum_ok(bytes(frame[14:]))


def test_verified_and_unverified_segments_never_share_a_run(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    frames = [segment(1000 * i, os.urandom(1000)) for i in range(6)]
    for i, f in enumerate(frames):
        m.add(memoryview(bytearray(f)), verified=i < 3)
    m.flush()
    first, second = written(out)
    assert VNET_HDR.unpack_from(first)[0] == 1 and VNET_HDR.unpack_from(second)[0] == 0
    assert len(first) == len(second)  # three segments each
    assert tcp_checksum_ok(second[10 + 14:])


def datagram(payload: bytes, sport: int = 1000, ident: int = 1, ttl: int = 64) -> bytes:
    udp = bytearray(struct.pack("!HHHH", sport, 2000, 8 + len(payload), 0))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), ident, 0x4000, ttl, 17, 0,
                               SRC, DST))
    struct.pack_into("!H", ip, 10, finish(partial(ip)))
    pseudo = SRC + DST + bytes([0, 17]) + struct.pack("!H", len(udp) + len(payload))
    struct.pack_into("!H", udp, 6, finish(partial(pseudo + udp + payload)))
    return MACS + b"\x08\x00" + bytes(ip) + bytes(udp) + payload


def feed_verified(m: Merger, frames: list[bytes]) -> None:
    for f in frames:
        m.add(memoryview(bytearray(f)), verified=True)
    m.flush()


def test_verified_datagrams_of_one_flow_become_one_uso_super_frame(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    payloads = [os.urandom(64) for _ in range(9)] + [os.urandom(20)]  # a shorter last one
    feed_verified(m, [datagram(p, ident=i) for i, p in enumerate(payloads)])
    (w,) = written(out)
    flags, gso_type, hdr_len, gso_size, cstart, coff = VNET_HDR.unpack_from(w)
    assert (flags, gso_type, hdr_len, gso_size, cstart, coff) == (1, GSO_UDP_L4, 42, 64, 34, 6)
    ip = w[10 + 14:]
    total = sum(map(len, payloads))
    assert struct.unpack_from("!H", ip, 2)[0] == len(ip) == 28 + total
    assert partial(ip[:20]) == 0, "IP header checksum"
    assert struct.unpack_from("!H", ip, 24)[0] == 8 + total, "UDP length spans the super-frame"
    # NEEDS_CSUM: the field holds the pseudo-header sum; completing it gives a valid checksum.
    udp = bytearray(ip[20:])
    struct.pack_into("!H", udp, 6, finish(partial(udp)))
    assert partial(ip[12:20] + bytes([0, 17]) + struct.pack("!H", len(udp)) + udp) == 0
    assert ip[28:] == b"".join(payloads)
    assert m.merged == 10


def test_datagram_runs_split_on_flow_size_and_kind(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    p = os.urandom(100)
    frames = [datagram(p), datagram(p), datagram(p[:50]),  # a shorter one joins, and ends the run
              datagram(p), datagram(p, sport=1001),            # a new run; another flow
              datagram(p, ttl=3), segment(0, p)]               # another TTL; TCP
    feed_verified(m, frames)
    got = written(out)
    assert [VNET_HDR.unpack_from(w)[1] for w in got] == [GSO_UDP_L4, 0, 0, 0, 0]
    assert [w[10:] for w in got[1:]] == frames[3:]
    assert len(got[0]) - 10 == len(frames[0]) + 150


def test_unverified_or_damaged_datagrams_are_written_as_they_came(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    frames = [datagram(bytes(64), ident=i) for i in range(3)]
    feed(m, frames)  # not from a verified GRO batch
    bad = bytearray(datagram(bytes(64)))
    bad[14 + 8] = 1  # TTL changed in flight, IP checksum not updated
    feed_verified(m, [bytes(bad), bytes(bad)])
    got = written(out)
    assert [w[10:] for w in got] == [*frames, bytes(bad), bytes(bad)]
    assert all(w[:10] == bytes(10) for w in got)


def test_a_kernel_without_uso_gets_each_datagram_once(tap, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    real = os.writev

    def old_kernel(fd: int, parts: list) -> int:
        if bytes(parts[0])[1] == GSO_UDP_L4:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, parts)

    monkeypatch.setattr(os, "writev", old_kernel)
    caplog.set_level(logging.INFO, logger="vxvdex.endpoint")
    frames = [datagram(os.urandom(64), ident=i) for i in range(5)]
    feed_verified(m, frames)
    feed_verified(m, frames)
    assert [w[10:] for w in written(out)] == frames + frames
    assert not m.uso and m.errors == 0 and m.merged == 0
    assert sum("UDP super-frames" in r.message for r in caplog.records) == 1


SRC6 = bytes.fromhex("20010db8000100000000000000000001")
DST6 = bytes.fromhex("20010db8000100000000000000000002")


def segment6(seq: int, payload: bytes, flags: int = 0x10, hops: int = 64) -> bytes:
    tcp = bytearray(struct.pack("!HHIIBBHHH", 1000, 2000, seq, 7, (8 << 4), flags, 500, 0, 0) + OPTS)
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, hops, SRC6, DST6)
    pseudo = SRC6 + DST6 + struct.pack("!I", len(tcp) + len(payload)) + bytes([0, 0, 0, 6])
    struct.pack_into("!H", tcp, 16, finish(partial(pseudo + tcp + payload)))
    return MACS + b"\x86\xdd" + ip + bytes(tcp) + payload


def tcp6_checksum_ok(ip6_and_tcp: bytes) -> bool:
    tcp = ip6_and_tcp[40:]
    return partial(ip6_and_tcp[8:40] + struct.pack("!I", len(tcp)) + bytes([0, 0, 0, 6]) + tcp) == 0


@pytest.mark.parametrize("verified", [False, True])
def test_ipv6_segments_become_one_tcpv6_super_frame(tap, verified: bool) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    payloads = [os.urandom(1378) for _ in range(7)] + [os.urandom(300)]
    seqs = [5000 + 1378 * i for i in range(8)]
    for s, p in zip(seqs, payloads, strict=True):
        m.add(memoryview(bytearray(segment6(s, p))), verified=verified)
    m.flush()
    (w,) = written(out)
    flags, gso_type, hdr_len, gso_size, cstart, coff = VNET_HDR.unpack_from(w)
    assert (gso_type, hdr_len, gso_size) == (GSO_TCPV6, 14 + 40 + 32, 1378)
    ip6 = bytearray(w[10 + 14:])
    assert struct.unpack_from("!H", ip6, 4)[0] == len(ip6) - 40 == 32 + sum(map(len, payloads))
    assert ip6[72:] == b"".join(payloads)
    if verified:  # NEEDS_CSUM at the TCP checksum, holding the pseudo-header sum
        assert (flags, cstart, coff) == (1, 54, 16)
        struct.pack_into("!H", ip6, 40 + 16, finish(partial(ip6[40:])))  # what a NIC would do
    assert tcp6_checksum_ok(bytes(ip6)), "TCP checksum of the merged frame"
    assert m.merged == 8


def test_a_corrupt_ipv6_segment_makes_the_merged_checksum_fail(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    frames = [bytearray(segment6(1000 + 1400 * i, os.urandom(1400))) for i in range(4)]
    frames[1][-7] ^= 0x01
    feed(m, [bytes(f) for f in frames])
    (w,) = written(out)
    assert not tcp6_checksum_ok(w[10 + 14:])


def test_ipv6_runs_split_on_hop_limit_and_extension_headers(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    p = bytes(1000)
    with_ext = bytearray(segment6(3000, p))
    with_ext[20] = 0  # next header: hop-by-hop options, not TCP
    frames = [segment6(0, p), segment6(1000, p, hops=9), segment6(2000, p, hops=9), bytes(with_ext)]
    feed(m, frames)
    got = written(out)
    assert [len(w) - 10 for w in got] == [len(frames[0]), len(frames[1]) + 1000, len(frames[3])]
    assert got[2][10:] == frames[3]


def datagram6(payload: bytes, sport: int = 1000) -> bytes:
    udp = bytearray(struct.pack("!HHHH", sport, 2000, 8 + len(payload), 0))
    ip = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(payload), 17, 64, SRC6, DST6)
    pseudo = SRC6 + DST6 + struct.pack("!I", 8 + len(payload)) + bytes([0, 0, 0, 17])
    struct.pack_into("!H", udp, 6, finish(partial(pseudo + udp + payload)))
    return MACS + b"\x86\xdd" + ip + bytes(udp) + payload


def test_verified_ipv6_datagrams_become_one_uso_super_frame(tap) -> None:  # type: ignore[no-untyped-def]
    m, out = tap
    payloads = [os.urandom(100) for _ in range(5)] + [os.urandom(30)]
    feed_verified(m, [datagram6(p) for p in payloads] + [datagram6(payloads[0], sport=1001)])
    w, other = written(out)
    assert VNET_HDR.unpack_from(w) == (1, GSO_UDP_L4, 62, 100, 54, 6)
    ip6 = bytearray(w[10 + 14:])
    total = sum(map(len, payloads))
    assert struct.unpack_from("!H", ip6, 4)[0] == len(ip6) - 40 == 8 + total
    assert struct.unpack_from("!H", ip6, 44)[0] == 8 + total, "UDP length spans the super-frame"
    udp = ip6[40:]
    struct.pack_into("!H", udp, 6, finish(partial(udp)))  # complete NEEDS_CSUM, as a NIC would
    assert partial(ip6[8:40] + struct.pack("!I", len(udp)) + bytes([0, 0, 0, 17]) + udp) == 0
    assert ip6[48:] == b"".join(payloads)
    assert other[10:] == datagram6(payloads[0], sport=1001) and other[:10] == bytes(10)
