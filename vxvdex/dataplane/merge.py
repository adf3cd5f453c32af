"""Receive-side merging: many wire frames, one tap write.

Consecutive in-order segments of one TCP flow (IPv4 or IPv6, no IP options
or extension headers) are handed to the tap as one TSO super-frame
(IFF_VNET_HDR, gso_type TCPV4 or TCPV6), which the namespace's stack takes
in one go, as if a NIC had done GRO. Runs of equal-sized UDP datagrams of
one flow (IPv4 or IPv6) become one USO super-frame (gso_type UDP_L4, Linux
6.2 and later), which the stack cuts back into the same datagrams; kernels
that refuse it get the datagrams one by one, and a note in the log.

Integrity stays end to end. Datagrams that reached us in a UDP GRO batch
had their (non-zero) UDP checksums verified by the kernel, which only
coalesces those: runs made only of them are handed over as CHECKSUM_PARTIAL
(NEEDS_CSUM, the field holding the pseudo-header sum), which the receiving
stack takes as verified, and which is completed correctly should the
namespace forward the frame elsewhere. Any other
run gets a TCP checksum derived from the segments' own checksum fields
(only their headers are read), right exactly when every segment's was, and
the kernel verifies it over the whole payload on delivery; a datagram with
a zero (unverified) outer UDP checksum cannot smuggle a corrupt segment in.
"""

from __future__ import annotations

import errno
import logging
import os
import struct

from vxvdex.dataplane.checksum import finish, partial
from vxvdex.dataplane.tap import GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR, VNET_PLAIN

log = logging.getLogger("vxvdex.endpoint")

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
TCP_ACK, TCP_PSH = 0x10, 0x08
F_NEEDS_CSUM = 1  # virtio-net header flag: CHECKSUM_PARTIAL at csum_start + csum_offset
IP_MAX = 65535
# Ethernet + IPv4 header without options, or + IPv6 header without
# extension headers: the TCP header's offset.
ETH, TH, TH6 = 14, 34, 54


# MACs, ethertype, version+IHL, TOS, total length, fragment field, TTL,
# protocol, addresses+ports, seq, ack, data offset, flags: bytes 0-47.
_SEG = struct.Struct("!12sHBBH2xHBB2x12sI4sBB")
# IPv6: MACs, ethertype, version+class+label, payload length, next header,
# hop limit, addresses+ports, seq, ack, data offset, flags: bytes 0-67.
_SEG6 = struct.Struct("!12sHIHBB36sI4sBB")
# The same up to the ports, then the UDP length: bytes 0-39 (IPv4), 0-59 (IPv6).
_DGRAM = struct.Struct("!12sHBBH2xHBB2x12sH")
_DGRAM6 = struct.Struct("!12sHIHBB36sH")
UDP_HLEN = ETH + 20 + 8
USO_MAX_SEGS = 64  # UDP_MAX_SEGMENTS


class Run:
    """Segments of one flow waiting to be written as one super-frame."""

    __slots__ = (
        "ack",
        "first",
        "flow",
        "hsum",
        "l3key",
        "last_len",
        "macs",
        "mss",
        "next_seq",
        "opts",
        "payloads",
        "push",
        "tcplen_sum",
        "th",
        "thlen",
        "total",
        "verified",
        "window",
    )

    def __init__(self, frame: memoryview, th: int, macs: bytes, flow: bytes, ack: bytes, l3key: int,
                 thlen: int, plen: int, seq: int, flags: int, verified: bool) -> None:
        self.first = frame
        self.th = th
        self.macs, self.flow, self.ack, self.l3key = macs, flow, ack, l3key
        self.thlen = thlen
        self.opts = bytes(frame[th + 20:th + thlen])
        self.mss = self.last_len = self.total = plen
        self.payloads = [frame[th + thlen:]]
        self.next_seq = (seq + plen) & 0xFFFFFFFF
        self.verified = verified
        self.hsum = 0 if verified else partial(frame[th:th + thlen])
        self.tcplen_sum = thlen + plen
        self.window = frame[th + 14:th + 16]
        self.push = flags & TCP_PSH

    def header(self) -> bytes:
        """Ethernet, IP and TCP headers of the merged super-frame."""
        th = self.th
        h = bytearray(self.first[:th + self.thlen])
        if th == TH:
            _U16.pack_into(h, 16, 20 + self.thlen + self.total)
            _U16.pack_into(h, 24, 0)
            _U16.pack_into(h, 24, finish(partial(h[ETH:TH])))
            addr_sum = partial(h[26:34]) + 6
        else:  # IPv6: a payload length, no header checksum
            _U16.pack_into(h, 18, self.thlen + self.total)
            addr_sum = partial(h[22:54]) + 6
        h[th + 13] |= self.push
        h[th + 14:th + 16] = self.window
        if self.verified:  # CHECKSUM_PARTIAL: the field holds the pseudo-header sum
            _U16.pack_into(h, th + 16, (addr_sum + self.thlen + self.total) % 0xFFFF)
            return bytes(h)
        _U16.pack_into(h, th + 16, 0)
        count = len(self.payloads)
        # Sum of every segment's payload, from its header and checksum field:
        # payload_i = -(pseudo_i + header_i) for a segment that was valid.
        payload_sum = -(count * addr_sum + self.tcplen_sum + self.hsum)
        total = addr_sum + self.thlen + self.total + partial(h[th:]) + payload_sum
        _U16.pack_into(h, th + 16, finish(total))
        return bytes(h)


class UdpRun:
    """Datagrams of one flow, all of one size but for a shorter last one,
    waiting to be written as one USO super-frame."""

    __slots__ = ("closed", "frames", "key", "l4", "size", "total")

    def __init__(self, frame: memoryview, l4: int, key: tuple, size: int) -> None:
        self.l4 = l4  # where the UDP header starts: after IPv4's or IPv6's
        self.key = key
        self.size = self.total = size
        self.frames = [frame]  # whole, for a kernel that refuses the super-frame
        self.closed = False

    def header(self) -> bytes:
        """Ethernet, IP and UDP headers of the super-frame; the UDP checksum
        field holds the pseudo-header sum (NEEDS_CSUM), lengths span it all."""
        l4, ulen = self.l4, 8 + self.total
        h = bytearray(self.frames[0][:l4 + 8])
        if l4 == TH:
            _U16.pack_into(h, 16, 20 + ulen)
            _U16.pack_into(h, 24, 0)
            _U16.pack_into(h, 24, finish(partial(h[ETH:TH])))
            addr_sum = partial(h[26:34])
        else:  # IPv6
            _U16.pack_into(h, 18, ulen)
            addr_sum = partial(h[22:54])
        _U16.pack_into(h, l4 + 4, ulen)
        _U16.pack_into(h, l4 + 6, (addr_sum + 17 + ulen) % 0xFFFF)
        return bytes(h)


class Merger:
    """Collects frames bound for the tap and writes them, merged where possible."""

    def __init__(self, tap_fd: int, enabled: bool = True) -> None:
        self.fd = tap_fd
        self.enabled = enabled
        self.run: Run | UdpRun | None = None
        self.uso = True  # until the kernel refuses a UDP_L4 super-frame
        self.writes = 0
        self.merged = 0
        self.errors = 0

    def add(self, frame: memoryview, verified: bool = False) -> None:
        """Queue one frame; frames of other flows or kinds flush the queue.
        verified: the kernel checked this datagram's non-zero UDP checksum."""
        if not self.enabled or len(frame) <= UDP_HLEN:
            self.single(frame)
            return
        if frame[12] == 0x86 and frame[13] == 0xDD:
            self.add_segment6(frame, verified)
            return
        if len(frame) < 54 or frame[23] != 6:  # not TCP (at IPv4's offset)
            if verified and self.uso and frame[23] == 17:
                self.add_datagram(frame)
            else:
                self.single(frame)
            return
        macs, etype, vihl, tos, tot, frag, ttl, proto, flow, seq, ack, doff, flags = _SEG.unpack_from(frame)
        thlen = (doff >> 4) << 2
        plen = tot - 20 - thlen
        if (etype != 0x0800 or vihl != 0x45 or proto != 6 or frag & 0x3FFF or flags & 0xF7 != TCP_ACK
                or tot + ETH != len(frame) or thlen < 20 or plen <= 0):
            self.single(frame)
            return
        self.queue(frame, TH, macs, flow, ack, tos << 8 | ttl, thlen, plen, seq, flags, verified)

    def add_segment6(self, frame: memoryview, verified: bool) -> None:
        """The IPv6 counterpart of add()'s TCP part (and of its UDP part)."""
        if verified and self.uso and len(frame) > TH6 + 8 and frame[20] == 17:
            self.add_datagram6(frame)
            return
        if len(frame) < TH6 + 20:
            self.single(frame)
            return
        macs, _etype, vcl, paylen, nexthdr, hops, flow, seq, ack, doff, flags = _SEG6.unpack_from(frame)
        thlen = (doff >> 4) << 2
        plen = paylen - thlen
        if (vcl >> 28 != 6 or nexthdr != 6 or flags & 0xF7 != TCP_ACK or paylen + TH6 != len(frame)
                or thlen < 20 or plen <= 0):
            self.single(frame)
            return
        self.queue(frame, TH6, macs, flow, ack, vcl << 8 | hops, thlen, plen, seq, flags, verified)

    def queue(self, frame: memoryview, th: int, macs: bytes, flow: bytes, ack: bytes, l3key: int,
              thlen: int, plen: int, seq: int, flags: int, verified: bool) -> None:
        """Add a TCP segment (TCP header at `th`) to the run, or start a new run."""
        run = self.run
        if (isinstance(run, Run) and flow == run.flow and seq == run.next_seq and run.last_len == run.mss
                and verified == run.verified
                and plen <= run.mss and ack == run.ack and macs == run.macs
                and l3key == run.l3key and run.total + plen + th + thlen <= IP_MAX
                and thlen == run.thlen and (thlen == 20 or frame[th + 20:th + thlen] == run.opts)):
            run.payloads.append(frame[th + thlen:])
            run.next_seq = (seq + plen) & 0xFFFFFFFF
            run.last_len = plen
            run.total += plen
            if not verified:
                run.hsum += partial(frame[th:th + thlen])
            run.tcplen_sum += thlen + plen
            run.window = frame[th + 14:th + 16]
            run.push = flags & TCP_PSH
        else:
            if run is not None:
                self.flush()
            # An odd MSS would shift later payloads off the 16-bit grid, and a
            # bad IP header must reach the kernel as it came, to be dropped there.
            if plen & 1 or (th == TH and partial(frame[ETH:TH]) != 0):
                self.single(frame)
                return
            self.run = run = Run(frame, th, macs, flow, ack, l3key, thlen, plen, seq, flags, verified)
        if run.push:
            self.flush()

    def add_datagram(self, frame: memoryview) -> None:
        """Queue one UDP datagram whose outer UDP checksum the kernel verified:
        only those may be handed over as checksum-valid."""
        macs, etype, vihl, tos, tot, frag, ttl, _proto, flow, ulen = _DGRAM.unpack_from(frame)
        size = ulen - 8
        if (etype != 0x0800 or vihl != 0x45 or frag & 0x3FFF or tot + ETH != len(frame)
                or ulen != tot - 20 or partial(frame[ETH:ETH + 20]) != 0):
            self.single(frame)  # as it came: the kernel judges (and drops) a bad header
            return
        self.queue_datagram(frame, TH, (macs, flow, tos, frag, ttl), size)

    def add_datagram6(self, frame: memoryview) -> None:
        """The IPv6 counterpart of add_datagram (no extension headers)."""
        macs, _etype, vcl, paylen, _nexthdr, hops, flow, ulen = _DGRAM6.unpack_from(frame)
        if vcl >> 28 != 6 or paylen + TH6 != len(frame) or ulen != paylen:
            self.single(frame)
            return
        self.queue_datagram(frame, TH6, (macs, flow, vcl, hops), ulen - 8)

    def queue_datagram(self, frame: memoryview, l4: int, key: tuple, size: int) -> None:
        """Add a datagram (UDP header at `l4`) to the run, or start a new run."""
        run = self.run
        if (isinstance(run, UdpRun) and key == run.key and not run.closed and size <= run.size
                and len(run.frames) < USO_MAX_SEGS and run.total + size + l4 - ETH + 8 <= IP_MAX):
            run.frames.append(frame)
            run.total += size
            run.closed = size < run.size
            return
        if run is not None:
            self.flush()
        self.run = UdpRun(frame, l4, key, size)

    def single(self, frame: memoryview) -> None:
        """Write one frame as it is, after what is queued."""
        if self.run is not None:
            self.flush()
        self._write([VNET_PLAIN, frame])

    def flush(self) -> None:
        """Write what is queued."""
        run, self.run = self.run, None
        if run is None:
            return
        if isinstance(run, UdpRun):
            self.flush_datagrams(run)
            return
        if len(run.payloads) == 1:
            self._write([VNET_PLAIN, run.first])
            return
        hdr = run.header()
        gso = GSO_TCPV4 if run.th == TH else GSO_TCPV6
        if run.verified:
            vnet = VNET_HDR.pack(F_NEEDS_CSUM, gso, run.th + run.thlen, run.mss, run.th, 16)
        else:
            vnet = VNET_HDR.pack(0, gso, run.th + run.thlen, run.mss, 0, 0)
        self.merged += len(run.payloads)
        self._write([vnet, hdr, *run.payloads])

    def flush_datagrams(self, run: UdpRun) -> None:
        frames = run.frames
        if len(frames) > 1:
            l4 = run.l4
            vnet = VNET_HDR.pack(F_NEEDS_CSUM, GSO_UDP_L4, l4 + 8, run.size, l4, 6)
            if self._write([vnet, run.header(), *[f[l4 + 8:] for f in frames]]) != errno.EINVAL:
                self.merged += len(frames)
                return
            # Linux before 6.2 knows no UDP_L4 super-frames: one write per datagram.
            self.errors -= 1
            self.uso = False
            log.info("this kernel's tap takes no UDP super-frames (Linux 6.2+): "
                     "UDP datagrams are written one by one")
        for frame in frames:
            self._write([VNET_PLAIN, frame])

    def _write(self, parts: list) -> int:
        """Write; 0, or the errno of a refusal (counted)."""
        try:
            os.writev(self.fd, parts)
        except OSError as err:
            # The tap refuses what its stack cannot take (down, gone): count it.
            self.errors += 1
            return err.errno or -1
        self.writes += 1
        return 0
