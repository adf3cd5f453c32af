"""extra_networks: a user who is also in one of these groups gets one more
tap, vde1, on that group's VLAN (named or given by gid in the config).

    h1: alice  vde0 -> VLAN of A   vde1 -> VLAN of X
    h2: bob    vde0 -> VLAN of A   (primary A, not in X)
        frank  vde0 -> VLAN of X   (primary X: no second tap for it)
"""

from __future__ import annotations

import pytest
from cluster import Cluster
from endpoints import pings
from provisioned import add_addr, is_up, link, links, ping_once, port, status


@pytest.mark.parametrize("named_by", ["name", "gid"])
def test_extra_network_gets_a_second_tap_on_its_vlan(cluster: Cluster, named_by: str) -> None:
    ga, gx = f"vxa{cluster.tag}", f"vxx{cluster.tag}"
    gid_a, gid_x = cluster.group(ga), cluster.group(gx)
    alice = cluster.user("alice", ga, extra=(gx,))
    bob = cluster.user("bob", ga)
    frank = cluster.user("frank", gx)
    cluster.extra_config = f"extra_networks: [{gx if named_by == 'name' else gid_x}]\n"
    cluster.start(1)
    cluster.start(2)
    ns_alice = cluster.open(1, alice)
    ns_bob, ns_frank = cluster.open(2, bob), cluster.open(2, frank)

    assert [p["vlan_gid"] for p in status(cluster, 1, alice)["ports"]] == [gid_a, gid_x]
    assert [p["ifname"] for p in status(cluster, 1, alice)["ports"]] == ["vde0", "vde1"]
    assert [p["ifname"] for p in status(cluster, 2, frank)["ports"]] == ["vde0"]
    assert [p["ifname"] for p in status(cluster, 2, bob)["ports"]] == ["vde0"]
    assert "vde1" in links(ns_alice) and "vde1" not in links(ns_bob) + links(ns_frank)
    vde1 = link(ns_alice, "vde1")
    assert vde1 is not None and is_up(ns_alice, "vde1") and vde1["mtu"] == 1450
    assert vde1["address"] == port(cluster, 1, alice, "vde1")["mac"] != port(cluster, 1, alice)["mac"]
    assert port(cluster, 1, alice, "vde1")["endpoint_alive"]

    add_addr(ns_alice, "198.51.100.1/24", "vde0")
    add_addr(ns_alice, "198.51.101.1/24", "vde1")
    add_addr(ns_bob, "198.51.100.2/24")
    add_addr(ns_frank, "198.51.101.2/24")
    assert pings(cluster.lan, ns_alice, "198.51.100.2"), "vde0: A's LAN"
    assert pings(cluster.lan, ns_alice, "198.51.101.2"), "vde1: X's LAN"
    # and X's LAN is not A's: frank, given an address on A's subnet, stays unreachable
    add_addr(ns_frank, "198.51.100.3/24")
    assert not ping_once(cluster, ns_alice, "198.51.100.3", wait=1)
