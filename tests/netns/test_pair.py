"""Two vxvdex-plug endpoints of one gid on two hosts: the basic promise."""

from __future__ import annotations

from pathlib import Path

import pytest
from endpoints import addr, overlay, pings, plug, transfer
from lan import Lan
from observe import next_status


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


def test_tcp_over_an_ipv6_overlay_is_merged_and_intact(lan: Lan, logs: Path) -> None:
    status_file = logs / "status.json"
    leaves = [lan.leaf(i, f"s{i}", plug("vxvde:///grp=1000", f"t{i}",
                                        *(("--status", str(status_file)) if i == 2 else ())),
                       [overlay(0, i, v6=True)], log=logs / f"plug{i}.log")[0] for i in (1, 2)]
    target = addr(overlay(0, 2, v6=True))
    assert pings(lan, leaves[0], target)
    before = next_status(status_file)["counters"]
    sent, got = transfer(lan, leaves[0], leaves[1], target, 20 << 20)
    assert sent == got
    after = next_status(status_file)["counters"]
    # Most segments reach the namespace inside super-frames (gso_type TCPV6).
    merged = after["rx_merged"] - before["rx_merged"]
    assert merged > (after["rx_frames"] - before["rx_frames"]) // 2
