"""The gateway's way out (egress: nat), behind a small interface.

The NAT itself (a veth from the gateway namespace to the host, nftables
masquerading) is services/nat.py; the gateway only asks for a VLAN's way
out to be there or gone, and for all of it to go when no served VLAN has
egress: nat any more. Errors become EgressError (an OSError: the gateway
logs it and tries again at the next collection).
"""

from __future__ import annotations

import logging
from typing import Protocol

from vxvdex.services.vlans import Vlan

log = logging.getLogger("vxvdexd")


class EgressError(OSError):
    """The way out could not be made or removed; str() says why."""


class Egress(Protocol):
    def attach(self, gw_ns: str, vlan: Vlan, uplink: str | None) -> None:
        """vlan's way out from gw_ns through uplink (None: the default route's); idempotent."""

    def detach(self, gid: int) -> None:
        """No way out for VLAN gid (idempotent)."""

    def attached(self) -> list[int]:
        """The gids that have a way out on this host."""

    def remove_all(self) -> None:
        """Every way out, and the rules that guard them, gone."""


class Nat:
    """services/nat.py (veth + nftables masquerading)."""

    def __init__(self) -> None:
        from vxvdex.services import nat
        self.nat = nat

    def attach(self, gw_ns: str, vlan: Vlan, uplink: str | None) -> None:
        try:
            self.nat.attach(gw_ns, vlan, uplink or self.nat.default_uplink())
        except self.nat.NatError as err:
            raise EgressError(f"egress nat of VLAN {vlan.group}: {err}") from None

    def detach(self, gid: int) -> None:
        try:
            self.nat.detach(gid)
        except self.nat.NatError as err:
            raise EgressError(f"removing egress nat of VLAN gid {gid}: {err}") from None

    def attached(self) -> list[int]:
        try:
            return list(self.nat.attached())
        except self.nat.NatError as err:
            raise EgressError(f"listing egress nat: {err}") from None

    def remove_all(self) -> None:
        try:
            self.nat.remove_all()
        except self.nat.NatError as err:
            raise EgressError(f"removing egress nat: {err}") from None


def load() -> Egress:
    return Nat()
