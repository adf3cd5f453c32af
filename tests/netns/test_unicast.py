"""Learning confines unicast: once h1 and h2 know each other, their flow
goes endpoint to endpoint and a third endpoint of the VLAN (on h3) sees
none of it, while it still sees the VLAN's broadcasts."""

from __future__ import annotations

from pathlib import Path

from capture import Capture, carried, incoming_with
from endpoints import addr, overlay, pings, plug, transfer
from lan import Lan
from observe import next_status, send_udp

BROADCAST = "198.51.100.255"


def test_learned_unicast_flow_does_not_reach_a_third_endpoint(lan: Lan, logs: Path) -> None:
    url = "vxvde:///grp=1000"
    st = {i: logs / f"status{i}.json" for i in (1, 2, 3)}
    leaves = {i: lan.leaf(i, f"u{i}", plug(url, f"t{i}", "--status", str(st[i])), [overlay(0, i)],
                          log=logs / f"plug{i}.log")[0] for i in (1, 2, 3)}
    # Learning: ARP and pings both ways, before anything is counted.
    assert pings(lan, leaves[1], addr(overlay(0, 2)))
    assert pings(lan, leaves[2], addr(overlay(0, 1)))
    before = next_status(st[1])["counters"]

    cap = Capture(lan, leaves[3], "t3", logs / "t3.cap")
    # Control: broadcasts of the VLAN do reach h3 through this capture.
    send_udp(lan, leaves[1], BROADCAST, 5002, 20, b"VXBCAST", broadcast=True)
    # The flows: 5 MB of TCP h1 -> h2 on port 5001, 500 UDP datagrams h2 -> h1.
    sent, got = transfer(lan, leaves[1], leaves[2], addr(overlay(0, 2)), 5 << 20)
    assert sent == got
    send_udp(lan, leaves[2], addr(overlay(0, 1)), 5003, 500, b"VXUNICAST")
    # Sentinel: a broadcast from each sender, after everything else it sent.
    for i in (1, 2):
        send_udp(lan, leaves[i], BROADCAST, 5002, 1, b"VXEND", broadcast=True)
    cap.wait_for(incoming_with(b"VXEND"), count=2, what="the sentinels")
    frames = cap.stop()

    seen = [f for f in frames if f.incoming]
    assert carried(seen, b"VXBCAST") == 20, "the control broadcasts did not reach h3"
    assert [f for f in seen if 5001 in (f.ports() or ())] == []
    assert [f for f in seen if b"VXUNICAST" in f.data] == []
    # And the flow did go as unicast datagrams (thousands of them), not to the group.
    after = next_status(st[1])["counters"]
    assert after["tx_datagrams_unicast"] - before["tx_datagrams_unicast"] > 3000
    assert after["tx_datagrams_group"] - before["tx_datagrams_group"] < 40
