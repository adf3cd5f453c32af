"""Two vxvdex-plug endpoints of one gid on two hosts: the basic promise."""

from __future__ import annotations

from pathlib import Path

import pytest
from endpoints import addr, overlay, pings, plug, transfer
from lan import Lan


@pytest.mark.parametrize("underlay", ["v4", "v6"])
def test_ping_both_ways_and_50mb_intact(lan: Lan, logs: Path, underlay: str) -> None:
    url = "vxvde:///grp=1000" + ("/v6" if underlay == "v6" else "")
    leaves = [lan.leaf(i, f"u{i}", plug(url, f"t{i}"), [overlay(0, i), overlay(0, i, v6=True)],
                       log=logs / f"plug{i}.log")[0] for i in (1, 2)]
    for a, b in ((0, 1), (1, 0)):
        for v6 in (False, True):
            target = addr(overlay(0, b + 1, v6))
            assert pings(lan, leaves[a], target), f"{leaves[a]} cannot ping {target}"
    sent, got = transfer(lan, leaves[0], leaves[1], addr(overlay(0, 2)), 50 << 20)
    assert sent == got
