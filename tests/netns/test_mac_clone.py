"""An endpoint notices its own tap's MAC arriving from another host (a clone
that makes the same MACs): counted, logged once per period, shown by
`vxvdex-session status`. The frames still arrive (the duplicate is the
fault, not this host's peer)."""

from __future__ import annotations

import sys
from pathlib import Path

from cluster import Cluster
from lan import Lan, wait_for
from provisioned import port

HERE = Path(__file__).resolve().parent


def inject(c: Cluster, dest: str, dport: int, vni: int, marker: str, src: str) -> None:
    c.lan.run(c.lan.host(2), sys.executable, str(HERE / "vxinject.py"), dest, str(dport), str(vni),
              marker, f"--src={src}")


def test_own_mac_from_another_host_is_reported(cluster: Cluster) -> None:
    c = cluster
    group = f"vxa{c.tag}"
    c.group(group)
    alice = c.user("alice", group)
    c.start(1)
    c.open(1, alice)
    p = port(c, 1, alice)
    ep = p["endpoint"]
    h1 = Lan.addr4(1)

    def counters() -> dict:
        result: dict = port(c, 1, alice)["endpoint"].get("counters", {})
        return result

    # Control: a frame of another MAC is delivered and not counted.
    inject(c, h1, ep["unicast_port"], p["vlan_gid"], "other", "02:00:00:00:00:01")
    wait_for(lambda: counters().get("rx_frames", 0) >= 1, timeout=15, what="the control frame")
    assert counters()["own_mac_seen"] == 0
    for i in range(3):  # to the endpoint's port, and to the group
        inject(c, h1, ep["unicast_port"], p["vlan_gid"], f"forged{i}", p["mac"])
    inject(c, ep["group"], int(p["url"].split("port=")[1].split("/")[0]), p["vlan_gid"], "forged-group",
           p["mac"])
    wait_for(lambda: counters().get("own_mac_seen", 0) >= 4, timeout=15, what="the forged frames counted")
    seen = port(c, 1, alice)["endpoint"]
    assert seen["own_mac_from"] == Lan.addr4(2)
    out = c.session(1, "status", alice, check=True).stdout
    assert f"MAC CONFLICT: 4 frames with this tap's MAC came from {Lan.addr4(2)}" in out, out
    assert c.log(1).count("frames with this tap's own MAC") == 1, "logged once per period, not per frame"
