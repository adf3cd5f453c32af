"""The gateway's way out (egress: nat), behind a small interface.

The NAT itself (a veth from the gateway namespace to the host, nftables
masquerading) is services/nat.py; the gateway only asks for it to be there
or gone. While nat.py is not part of the build, a VLAN with egress: nat is
served without a way out, and the log says so.
"""

from __future__ import annotations

import importlib
import logging
from typing import Protocol

from vxvdex.services.vlans import Vlan

log = logging.getLogger("vxvdexd")


class Egress(Protocol):
    def attach(self, gw_ns: str, vlan: Vlan, uplink: str | None) -> None:
        """Make vlan's way out from gw_ns through the host's uplink (idempotent)."""

    def detach(self, gw_ns: str, vlan: Vlan) -> None:
        """Remove vlan's way out (idempotent)."""


class NoEgress:
    """Used where services/nat.py is missing: says so, does nothing."""

    def attach(self, gw_ns: str, vlan: Vlan, uplink: str | None) -> None:
        log.warning("VLAN %s has egress: nat, but this vxvdex has no NAT support: no way out", vlan.group)

    def detach(self, gw_ns: str, vlan: Vlan) -> None:
        pass


def load() -> Egress:
    """services.nat if it is there (it provides attach and detach), else NoEgress."""
    try:
        nat = importlib.import_module("vxvdex.services.nat")
    except ImportError:
        return NoEgress()
    if not (hasattr(nat, "attach") and hasattr(nat, "detach")):
        return NoEgress()
    return nat
