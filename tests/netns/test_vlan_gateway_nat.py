"""Egress from a served VLAN, end to end: addresses and the default route by
DHCP from the gateway vxvdexd runs, the way out through services/nat.py.

    users of A (egress nat, gateway on h1) --> outside ns 192.0.2.100, seen as h1 (192.0.2.1)
    users of B (egress none, gateway on h2) -x-> outside, even with a route set by hand
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cluster import Cluster
from lan import sh
from natnet import OUTSIDE4, NatNet
from runtrace import running_cluster
from vlanlan import SUBNET_A, dhcp, gateway, resolve, vlans_config

from vxvdex.services.vlans import default_domain

PORT = 8080


@dataclass
class World:
    c: Cluster
    net: NatNet
    group_a: str
    group_b: str
    gid_a: int
    gid_b: int


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cluster(hosts=3) as c:
        group_a, group_b = f"vxa{c.tag}", f"vxb{c.tag}"
        gid_a, gid_b = c.group(group_a), c.group(group_b)
        c.extra_config = "network:\n  uplink: eth0\n" + vlans_config(group_a, group_b, egress_a="nat")
        net = NatNet(c.lan)
        net.serve(net.outside, "outside", PORT)
        c.start_all()
        yield World(c, net, group_a, group_b, gid_a, gid_b)


def test_a_nat_vlan_reaches_the_outside_through_its_gateway(world: World) -> None:
    w = world
    user = w.c.user("out", w.group_a)
    ns = w.c.open(3, user)
    addr = dhcp(w.c, ns, f"{user}-h3")
    assert ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(SUBNET_A)
    gw = gateway(w.c, 1, w.gid_a)
    assert sh("ip", "-n", ns, "route", "show", "default").stdout.split()[:3] == ["default", "via",
                                                                                 gw["gateway4"]]
    seen = w.net.probe(ns, outside=(OUTSIDE4, PORT))["outside"]
    assert seen == "outside 192.0.2.1", "masqueraded to h1's uplink address"
    assert resolve(ns, f"gw.{default_domain(w.group_a)}", gw["gateway4"]) == gw["gateway4"]


def test_a_vlan_without_egress_reaches_nothing_beyond_itself(world: World) -> None:
    w = world
    user = w.c.user("shut", w.group_b)
    ns = w.c.open(3, user)
    dhcp(w.c, ns, f"{user}-h3")
    assert sh("ip", "-n", ns, "route", "show", "default").stdout == "", "no router by DHCP"
    gw4 = gateway(w.c, 2, w.gid_b)["gateway4"]
    sh("ip", "-n", ns, "route", "add", "default", "via", gw4)  # as root, by hand: still nothing
    assert w.net.probe(ns, outside=(OUTSIDE4, PORT)) == {"outside": None}
