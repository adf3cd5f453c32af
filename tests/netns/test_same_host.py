"""Endpoints and their own host: an endpoint never takes its own multicast
back as a frame, while another endpoint of the same VLAN on the same host
is heard like any other (PROTOCOL.md section 4, self filter)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from capture import Capture, incoming_with
from endpoints import addr, overlay, pings, plug
from lan import Lan
from observe import mac_bytes, mac_of, next_status, peer_macs, peers_at, send_udp, wait_status

BROADCASTS = 20


def test_endpoint_never_receives_its_own_frames(lan: Lan, logs: Path) -> None:
    url = "vxvde:///grp=1000"
    st = logs / "status1.json"
    u1 = lan.leaf(1, "u1", plug(url, "t1", "--status", str(st)), [overlay(0, 1), overlay(0, 1, v6=True)],
                  log=logs / "plug1.log")[0]
    u2 = lan.leaf(2, "u2", plug(url, "t2"), [overlay(0, 2)], log=logs / "plug2.log")[0]
    own = mac_of(lan, u1, "t1")
    before = wait_status(st, bool)["counters"]["drops"]["self"]
    cap = Capture(lan, u1, "t1", logs / "t1.cap")

    send_udp(lan, u1, "198.51.100.255", 5006, BROADCASTS, b"VXMINE", broadcast=True)
    assert pings(lan, u1, addr(overlay(0, 2)))
    send_udp(lan, u2, "198.51.100.255", 5006, 1, b"VXEND", broadcast=True)  # sentinel, from h2
    cap.wait_for(incoming_with(b"VXEND"), what="h2's sentinel")
    frames = cap.stop()

    # The capture saw our broadcasts leave, and h2's frames arrive...
    assert sum(not f.incoming and b"VXMINE" in f.data for f in frames) == BROADCASTS
    assert any(f.incoming and f.src == mac_bytes(mac_of(lan, u2, "t2")) for f in frames)
    # ...but nothing from our own MAC ever came back into the tap.
    assert [f for f in frames if f.incoming and f.src == mac_bytes(own)] == []
    after = next_status(st)
    # Every datagram we sent to the group came back on the multicast socket and was dropped.
    assert after["counters"]["drops"]["self"] - before >= BROADCASTS
    assert own not in peer_macs(after)
    assert not peers_at(after, lan.addr4(1), after["unicast_port"])


@pytest.mark.parametrize("underlay", ["v4", "v6"])
def test_two_endpoints_on_one_host_reach_each_other(lan: Lan, logs: Path, underlay: str) -> None:
    url = "vxvde:///grp=1000" + ("/v6" if underlay == "v6" else "")
    host1 = lan.addr6(1) if underlay == "v6" else lan.addr4(1)
    st = {n: logs / f"status{n}.json" for n in "ab"}
    leaves = {n: lan.leaf(1, f"u{n}", plug(url, f"t{n}", "--status", str(st[n])), [overlay(0, i)],
                          log=logs / f"plug{n}.log")[0] for i, n in ((1, "a"), (2, "b"))}
    assert pings(lan, leaves["a"], addr(overlay(0, 2)), count=5)
    assert pings(lan, leaves["b"], addr(overlay(0, 1)), count=5)
    since = time.time_ns()
    first = {n: wait_status(st[n], bool) for n in "ab"}
    assert first["a"]["unicast_port"] != first["b"]["unicast_port"]
    for me, other in (("a", "b"), ("b", "a")):
        now = next_status(st[me], since_ns=since)
        # It learned the other one at this host's address and the other's own port...
        learned = peers_at(now, host1, first[other]["unicast_port"])
        assert [p["mac"] for p in learned] == [mac_of(lan, leaves[other], f"t{other}")]
        # ...first through the group (ARP broadcast), then directly (the echo traffic).
        c = now["counters"]
        assert c["tx_datagrams_group"] >= 1 and c["tx_datagrams_unicast"] >= 5, c
        assert c["rx_frames"] >= 6, c
