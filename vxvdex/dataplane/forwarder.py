"""The forwarding loop: tap <-> the VLAN, batched.

One thread, one epoll. Every wakeup drains what is pending on each ready
descriptor (bounded, so one direction cannot starve the other), except that
a lone datagram with nothing to merge ends a socket's drain: asking epoll
again is cheaper than the exception that ends an empty receive, and it
keeps the per-hop latency of interactive traffic down.

- tap -> wire: frames are read into an arena with their virtio-net header,
  whose last 8 bytes are then overwritten by the vxvde header, so each
  datagram is a slice of the arena; runs of equal-sized datagrams to one
  destination leave in a single sendmsg with UDP_SEGMENT.
- wire -> tap: datagrams (UDP_GRO hands many per call) are checked header
  first, learned, and queued to the merger, which writes consecutive TCP
  segments, and runs of UDP datagrams, as one super-frame.

Nothing is copied per packet beyond what the kernel does.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import select
import socket
import struct
import time
from collections.abc import Callable

from vxvdex.dataplane import wire
from vxvdex.dataplane.counters import Counters, DropLog
from vxvdex.dataplane.mactable import MacTable
from vxvdex.dataplane.merge import Merger
from vxvdex.dataplane.tap import Tap, TapError
from vxvdex.dataplane.transport import SOL_UDP, UDP_GRO, UDP_SEGMENT, Transport, is_local_address

log = logging.getLogger("vxvdex.endpoint")

MAX_DATAGRAM = 65536
TAP_READ = MAX_DATAGRAM + 16    # the largest frame a tap can hold, plus its header
RX_ARENA = 8 * MAX_DATAGRAM
TX_ARENA = 8 * TAP_READ
BUDGET = 256          # datagrams or tap reads per descriptor per wakeup
GSO_MAX_SEGS = 64     # UDP_MAX_SEGMENTS of Linux 6.1
GSO_MAX_BYTES = 65000
ANC_SIZE = 128
_GRO_SIZE = struct.Struct("=i")    # UDP_GRO control message: an int
_SEG_SIZE = struct.Struct("=H")    # UDP_SEGMENT control message: a u16
OWN_MAC_PERIOD = 10.0              # seconds between two reports of our own MAC from elsewhere
MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag's & runs Python code


class Batch:
    """Datagrams to one destination that can leave in one UDP_SEGMENT send:
    all of one size, but for a shorter last one, which closes the batch."""

    __slots__ = ("closed", "dest", "parts", "size", "total")

    def __init__(self, dest: tuple, size: int, first: memoryview) -> None:
        self.dest = dest
        self.size = size
        self.parts = [first]
        self.total = size
        self.closed = False


class Endpoint:
    """Forwards between one tap and one VLAN until stop() is called."""

    def __init__(self, tap: Tap, transport: Transport, url_vni: int, hashsize: int,
                 expire: float, max_frame: int, mtu_source: Callable[[], int] | None = None,
                 merge: bool = True, own_mac: bytes = b"") -> None:
        self.tap = tap
        self.own_mac = own_mac  # the tap's MAC: arriving from elsewhere, a clone has it too
        self.own_mac_from: tuple | None = None
        self.own_mac_report = 0.0
        # FileIO answers EAGAIN with None, not an exception: cheaper per wakeup.
        self.tap_reader = io.FileIO(tap.fd, "rb", closefd=False)
        self.t = transport
        self.hdr = wire.header(url_vni)
        self.table = MacTable(hashsize, expire)
        self.c = Counters()
        self.drops = self.c.drops
        self.droplog = DropLog()
        self.merger = Merger(tap.fd, enabled=merge)
        self.max_frame = max_frame
        self.mtu_source = mtu_source
        self.rx = bytearray(RX_ARENA)
        self.rxv = memoryview(self.rx)
        self.tx = bytearray(TX_ARENA)
        self.txv = memoryview(self.tx)
        self.batch: Batch | None = None
        self.gso_max_size = 65535 if transport.gso else 0
        self.local_cache: dict[str, bool] = {}
        self.now = time.monotonic()
        self.stopping = False
        self.on_tick: Callable[[], None] | None = None

    # ---- wire -> tap -------------------------------------------------------

    def drain_socket(self, sock: socket.socket, mcast: bool) -> None:
        """Receive what is pending on one socket and hand it to the tap."""
        off = 0
        recv = sock.recvmsg_into
        rxv = self.rxv
        for _ in range(BUDGET):
            try:
                n, anc, flags, addr = recv([rxv[off:off + MAX_DATAGRAM]], ANC_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as err:  # ICMP errors of earlier unicast sends surface here
                if err.errno != errno.ECONNREFUSED:
                    log.warning("receive failed: %s", err)
                continue
            if flags & MSG_TRUNC:
                self.c.rx_datagrams += 1
                self._drop("truncated", addr)
                continue
            seg = n
            for level, kind, data in anc:
                if level == SOL_UDP and kind == UDP_GRO:
                    seg = _GRO_SIZE.unpack_from(data)[0]
            self.c.rx_datagrams += -(-n // seg) if seg else 1  # a GRO batch holds many
            self.receive(off, n, seg, addr, mcast)
            if seg >= n and not self.merger.run:
                break  # a lone datagram, nothing to merge with: epoll says if more wait
            off += n
            if off > RX_ARENA - MAX_DATAGRAM:
                self.merger.flush()
                off = 0
        self.merger.flush()

    def receive(self, off: int, n: int, seg: int, addr: tuple, mcast: bool) -> None:
        """Check, learn and deliver the datagrams at rx[off:off+n], each `seg`
        bytes long but for a shorter last one, all sent from `addr`."""
        if mcast and addr[1] == self.t.port and self._is_local(addr[0]):
            self._drop("self", addr, -(-n // seg) if seg else 1)
            return
        if n == 0:  # an empty datagram: no slice to walk (and range() takes no step 0)
            self._drop("short", addr)
            return
        rx, rxv, hdr, add, own = self.rx, self.rxv, self.hdr, self.merger.add, self.own_mac
        longest = self.max_frame + 8
        end = off + n
        # Only datagrams with non-zero, verified UDP checksums are coalesced
        # by the kernel's UDP GRO: a batch needs no second verification.
        verified = seg < n
        learned = b""
        frames = 0
        for start in range(off, end, seg):
            length = seg if start + seg <= end else end - start
            if length <= 22 or length > longest or not rx.startswith(hdr, start):
                self._reject(start, length, addr)
                continue
            # A GRO batch is mostly one sender MAC: learn it once per batch.
            if not learned or not rx.startswith(learned, start + 14):
                learned = bytes(rxv[start + 14:start + 20])
                if learned == own:  # once per sender in a batch, not per frame
                    self._own_mac_seen(addr)
                self.table.learn(learned, addr, self.now)
            add(rxv[start + 8:start + length], verified)
            frames += 1
        self.c.rx_frames += frames
        self.c.rx_bytes += n - 8 * frames

    def _own_mac_seen(self, addr: tuple) -> None:
        """Another host sends with our MAC (a clone with our host id): count
        it and say so, at most once per OWN_MAC_PERIOD. Delivered anyway:
        the fault is the duplicate, not this host's peer."""
        self.c.own_mac_seen += 1
        self.own_mac_from = addr
        if self.now >= self.own_mac_report:
            self.own_mac_report = self.now + OWN_MAC_PERIOD
            log.warning("frames with this tap's own MAC %s arrive from %s: another host uses it "
                        "(cloned without a distinct host name or NIC?); %d so far",
                        self.own_mac.hex(":"), addr[0], self.c.own_mac_seen)

    def _reject(self, start: int, length: int, addr: tuple) -> None:
        """Count (and maybe act on) a datagram that carries no deliverable frame."""
        if length < 8:
            self._drop("short", addr)
        elif not self.rx.startswith(self.hdr, start):
            bad_vni = self.rx[start:start + 4] == self.hdr[:4] and self.rx[start + 7] == 0
            self._drop("bad_vni" if bad_vni else "bad_flags", addr)
        elif length == 8:
            self.c.leaves += 1
            self.table.forget(addr)
        elif length <= 22:
            self._drop("runt", addr)
        else:
            self._drop("oversize", addr)

    def _drop(self, reason: str, addr: object, count: int = 1) -> None:
        self.drops[reason] += count
        if reason != "self":  # our own multicast coming back is normal
            self.droplog.note(reason, addr)

    def _is_local(self, host: str) -> bool:
        known = self.local_cache.get(host)
        if known is None:
            if len(self.local_cache) > 64:
                self.local_cache.clear()
            known = self.local_cache[host] = is_local_address(host, self.t.kind == "AF_VXVDEX")
        return known

    # ---- tap -> wire -------------------------------------------------------

    def drain_tap(self) -> None:
        """Read pending frames from the tap and send them, batched."""
        readinto, tx, txv, hdr = self.tap_reader.readinto, self.tx, self.txv, self.hdr
        group, lookup, queue, now = self.t.group, self.table.lookup, self.queue, self.now
        c = self.c
        off = 0
        last_mac, last_dest = b"", group  # frames of one drain mostly go to one peer
        for _ in range(BUDGET):
            try:
                n = readinto(txv[off:off + TAP_READ])
            except OSError as err:  # EBADFD: deleted under us; the supervisor makes a new one
                raise TapError(err.errno, f"tap {self.tap.name} is gone: {err.strerror}") from None
            if n is None:  # nothing more pending
                break
            # We asked for no offloads: anything else is not a finished frame.
            if n < 24 or tx[off] or tx[off + 1]:
                c.tx_dropped += 1
                continue
            tx[off + 2:off + 10] = hdr
            if tx[off + 10] & 1:
                dest = group
            elif last_mac and tx.startswith(last_mac, off + 10):
                dest = last_dest
            else:
                last_mac = bytes(txv[off + 10:off + 16])
                dest = last_dest = lookup(last_mac, now) or group
            queue(dest, txv[off + 2:off + n], n - 2)
            c.tx_frames += 1
            c.tx_bytes += n - 10
            off += n
            if off > TX_ARENA - TAP_READ:
                self.flush_batch()
                off = 0
        self.flush_batch()

    def queue(self, dest: tuple, datagram: memoryview, size: int) -> None:
        """Add one datagram to the pending batch, flushing when it cannot join."""
        b = self.batch
        if b is not None:
            if (b.dest == dest and not b.closed and size <= b.size and len(b.parts) < GSO_MAX_SEGS
                    and b.total + size <= GSO_MAX_BYTES):
                b.parts.append(datagram)
                b.total += size
                b.closed = size < b.size
                return
            self.flush_batch()
        self.batch = Batch(dest, size, datagram)

    def flush_batch(self) -> None:
        """Send the pending batch: one sendmsg, segmented by the kernel."""
        b, self.batch = self.batch, None
        if b is None:
            return
        count = len(b.parts)
        if b.dest is self.t.group:
            self.c.tx_datagrams_group += count
        else:
            self.c.tx_datagrams_unicast += count
        if count == 1 or b.size > self.gso_max_size:
            for part in b.parts:
                self._sendmsg([part], [], b.dest)
            return
        cmsg = [(SOL_UDP, UDP_SEGMENT, _SEG_SIZE.pack(b.size))]
        if not self._sendmsg(b.parts, cmsg, b.dest, gso=True):
            # Segments larger than the path MTU: remember, send one by one.
            self.gso_max_size = b.size - 1
            for part in b.parts:
                self._sendmsg([part], [], b.dest)

    def _sendmsg(self, parts: list, cmsg: list, dest: tuple, gso: bool = False) -> bool:
        """Send; False only when a GSO send was refused and must be redone one by one."""
        try:
            self.t.ucast.sendmsg(parts, cmsg, 0, dest)
            self.c.tx_sends += 1
            return True
        except OSError as err:
            if gso and err.errno in (errno.EINVAL, errno.EMSGSIZE, errno.EIO):
                return False
            if err.errno == errno.EACCES and dest is not self.t.group:
                # AF_VXVDEX no longer lets us reach this peer: ask the group.
                self.table.forget(dest)
                return self._sendmsg(parts, cmsg, self.t.group, gso)
            self.c.tx_errors += 1
            if err.errno not in (errno.ENOBUFS, errno.EAGAIN, errno.ECONNREFUSED):
                log.warning("send to %s failed: %s", dest[0], err.strerror)
            return True

    # ---- the loop ----------------------------------------------------------

    def run(self, wakeup_fd: int | None = None) -> None:
        """Forward until stop(); wakeup_fd (e.g. a signal pipe) breaks the wait."""
        ep = select.epoll()
        handlers: dict[int, Callable[[], None]] = {
            self.tap.fd: self.drain_tap,
            self.t.mcast.fileno(): lambda: self.drain_socket(self.t.mcast, True),
            self.t.ucast.fileno(): lambda: self.drain_socket(self.t.ucast, False),
        }
        if wakeup_fd is not None:
            handlers[wakeup_fd] = lambda: _drain_fd(wakeup_fd)
        for fd in handlers:
            ep.register(fd, select.EPOLLIN)
        next_tick = time.monotonic() + 1.0
        try:
            while not self.stopping:
                for fd, _ev in ep.poll(1.0):
                    self.now = time.monotonic()
                    handlers[fd]()
                self.now = time.monotonic()
                if self.now >= next_tick:
                    next_tick = self.now + 1.0
                    self.tick()
        finally:
            ep.close()

    def tick(self) -> None:
        """Once a second: follow MTU changes, publish status."""
        if self.mtu_source is not None:
            try:
                self.max_frame = self.mtu_source() + 18
            except OSError:
                log.info("the tap is in another namespace now: frames up to %d bytes are delivered "
                         "(set --mtu to change it)", self.max_frame - 18)
                self.mtu_source = None
        if self.on_tick is not None:
            self.on_tick()

    def stop(self) -> None:
        self.stopping = True

    def leave(self) -> None:
        """Tell the VLAN we are gone: a header-only datagram to the group."""
        try:
            self.t.ucast.sendto(self.hdr, self.t.group)
        except OSError as err:
            log.warning("could not send the leave datagram: %s", err.strerror)

    def status(self) -> dict:
        """Counters and learned peers, for status files and SIGUSR1."""
        now = time.monotonic()
        peers = [{"mac": mac.hex(":"), "address": addr[0], "port": addr[1], "age": round(age, 1)}
                 for mac, addr, age in self.table.entries(now)]
        self.c.rx_merged = self.merger.merged
        self.c.tap_writes = self.merger.writes
        self.drops["tap_refused"] = self.merger.errors
        return {"transport": self.t.kind, "gso": self.t.gso, "gro": self.t.gro,
                "merging": self.merger.enabled, "udp_merging": self.merger.enabled and self.merger.uso,
                "unicast_port": self.t.port,
                "group": self.t.group[0], "counters": self.c.as_dict(), "peers": peers,
                "own_mac_from": None if self.own_mac_from is None else self.own_mac_from[0]}


def _drain_fd(fd: int) -> None:
    try:
        os.read(fd, 512)
    except BlockingIOError:
        pass
