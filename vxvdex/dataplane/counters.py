"""Counters of an endpoint, and rate-limited reports of dropped datagrams."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

log = logging.getLogger("vxvdex.endpoint")

# Why a received datagram was not delivered, as counted and reported.
DROP_REASONS = {
    "short": "shorter than the 8-byte header",
    "bad_flags": "flags or reserved bytes are not those of vxvde",
    "bad_vni": "header of another VNI",
    "runt": "frame of 14 bytes or less",
    "oversize": "frame larger than the tap's MTU allows",
    "truncated": "datagram larger than the receive buffer",
    "self": "our own multicast looped back",
    "tap_refused": "the tap refused the frame",
}


@dataclass
class Counters:
    rx_datagrams: int = 0
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_merged: int = 0
    tap_writes: int = 0
    leaves: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_datagrams_unicast: int = 0
    tx_datagrams_group: int = 0
    tx_sends: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0
    own_mac_seen: int = 0   # frames from another host with our tap's MAC
    drops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def as_dict(self) -> dict:
        return asdict(self)


class DropLog:
    """Logs the first drop of each reason, then at most one summary per period."""

    def __init__(self, period: float = 10.0) -> None:
        self.period = period
        self.next_report: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def note(self, reason: str, sender: object) -> None:
        now = time.monotonic()
        if now < self.next_report.get(reason, 0.0):
            self.suppressed[reason] = self.suppressed.get(reason, 0) + 1
            return
        more = self.suppressed.pop(reason, 0)
        extra = f" ({more} more since the last report)" if more else ""
        log.warning("dropped a datagram from %s: %s%s", sender, DROP_REASONS[reason], extra)
        self.next_report[reason] = now + self.period
