"""The MAC learning table: source MAC -> the UDP address it was last heard from.

Like vdeplug4's vde_hashtable, a fixed array of buckets holding one entry
each; a new MAC whose bucket is taken replaces the old entry. Memory is
therefore bounded whatever a flood of random source MACs does, and the
only cost of a collision is that frames to the evicted MAC go to the group.
The bucket index comes from Python's per-process randomized hash, so a peer
cannot choose MACs that collide on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator

Address = tuple  # (host, port) or (host, port, flowinfo, scope_id)


class MacTable:
    """Fixed-size learning table with per-entry expiry."""

    def __init__(self, hashsize: int, expire: float) -> None:
        size = 1
        while size < hashsize:  # a power of two, as vdeplug4 rounds it
            size <<= 1
        self.mask = size - 1
        self.expire = expire
        self.buckets: list[list | None] = [None] * size
        # How many entries each address holds, so a leave from an address we
        # never learned (cheap for anyone to send) costs no table scan.
        self.holders: dict[Address, int] = {}

    def learn(self, mac: bytes, addr: Address, now: float) -> None:
        """Remember that `mac` was heard from `addr` at `now` (group MACs never)."""
        if mac[0] & 1:
            return
        idx = hash(mac) & self.mask
        entry = self.buckets[idx]
        if entry is not None and entry[0] == mac and entry[1] == addr:
            entry[2] = now
            return
        if entry is not None:
            self._release(entry[1])
        self.buckets[idx] = [mac, addr, now]
        self.holders[addr] = self.holders.get(addr, 0) + 1

    def _release(self, addr: Address) -> None:
        left = self.holders.pop(addr, 1) - 1
        if left:
            self.holders[addr] = left

    def lookup(self, mac: bytes, now: float) -> Address | None:
        """The learned address of `mac`, or None: send to the group."""
        entry = self.buckets[hash(mac) & self.mask]
        if entry is None or entry[0] != mac or now - entry[2] > self.expire:
            return None
        addr: Address = entry[1]
        return addr

    def forget(self, addr: Address) -> int:
        """Drop every entry learned from `addr` (a leave); return how many."""
        if addr not in self.holders:
            return 0
        del self.holders[addr]
        dropped = 0
        for idx, entry in enumerate(self.buckets):
            if entry is not None and entry[1] == addr:
                self.buckets[idx] = None
                dropped += 1
        return dropped

    def entries(self, now: float) -> Iterator[tuple[bytes, Address, float]]:
        """Live entries as (mac, address, age in seconds)."""
        for entry in self.buckets:
            if entry is not None and now - entry[2] <= self.expire:
                yield entry[0], entry[1], now - entry[2]
