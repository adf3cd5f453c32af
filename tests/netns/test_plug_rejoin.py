"""vxvdex-plug keeps its group when the host's uplink is deleted and made
again (a NIC reset, a bridge rebuilt): the kernel dropped the membership with
the old interface, so the plug joins again, as the daemon's endpoints do.

    h1: vxvdex-plug (leaf u1)     h2: vxvdex-plug (leaf u2)
    h1's eth0 deleted and made again; u2 must still reach u1 through the group
"""

from __future__ import annotations

from pathlib import Path

from endpoints import addr, overlay, pings, plug
from faults import flush_neighbours
from lan import Lan, wait_for


def test_the_plug_joins_again_after_the_uplink_is_made_again(lan: Lan, logs: Path) -> None:
    url = "vxvde:///grp=1000"
    leaves = {i: lan.leaf(i, f"u{i}", plug(url, f"t{i}"), [overlay(0, i)], log=logs / f"plug{i}.log")[0]
              for i in (1, 2)}
    assert pings(lan, leaves[2], addr(overlay(0, 1)))
    lan.ip(lan.host(1), "link", "del", "eth0")
    lan.uplink(1)
    flush_neighbours(leaves[1], leaves[2], lan.host(1), lan.host(2))
    # u2's ARP request for u1 reaches h1 only through the group: h1 must be a member again.
    wait_for(lambda: pings(lan, leaves[2], addr(overlay(0, 1)), count=1, timeout=0.5), timeout=6,
             what="u2 to reach u1 over h1's new uplink")
    assert "joined 239.0.3.232 again" in (logs / "plug1.log").read_text()
