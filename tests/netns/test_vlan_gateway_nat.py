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
from lan import sh, wait_for
from natnet import OUTSIDE4, NatNet
from vlanlan import SUBNET_A, World, gateway, resolve, vlan_world, wait_addr

from vxvdex.services.vlans import default_domain

PORT = 8080


@dataclass
class NatWorld:
    w: World
    net: NatNet


@pytest.fixture(scope="module")
def world() -> Iterator[NatWorld]:
    with vlan_world(egress_a="nat", extra="network:\n  uplink: eth0\n") as w:
        net = NatNet(w.c.lan)
        net.serve(net.outside, "outside", PORT)
        w.c.start_all()
        yield NatWorld(w, net)


def test_a_nat_vlan_reaches_the_outside_through_its_gateway(world: NatWorld) -> None:
    w, net = world.w, world.net
    user = w.c.user("out", w.group_a)
    ns = w.c.open(3, user)
    addr = wait_addr(ns)
    assert ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(SUBNET_A)
    gw = gateway(w.c, 1, w.gid_a)
    # The client's hook puts the route right after the address.
    route = wait_for(lambda: sh("ip", "-n", ns, "route", "show", "default").stdout, what="a default route")
    assert route.split()[:3] == ["default", "via", gw["gateway4"]]
    seen = net.probe(ns, outside=(OUTSIDE4, PORT))["outside"]
    assert seen == "outside 192.0.2.1", "masqueraded to h1's uplink address"
    assert resolve(ns, f"gw.{default_domain(w.group_a)}", gw["gateway4"]) == gw["gateway4"]
    # dnsmasq serves vde0 alone: not the veth to the host (up0, 169.254.88.2), not lo.
    name = f"gw.{default_domain(w.group_a)}"
    assert resolve(gw["netns"], name, gw["gateway4"]) == gw["gateway4"]
    assert resolve(gw["netns"], name, "169.254.88.2") is None
    assert resolve(gw["netns"], name, "127.0.0.1") is None


def test_a_vlan_without_egress_reaches_nothing_beyond_itself(world: NatWorld) -> None:
    w, net = world.w, world.net
    user = w.c.user("shut", w.group_b)
    ns = w.c.open(3, user)
    wait_addr(ns)
    # bound: the client's hook has done all it does (address, route if any, then its status)
    wait_for(lambda: w.c.ask(3, f"status {user}").json()["ports"][0]["dhcp"]["state"] == "bound",
             what="the lease bound")
    assert sh("ip", "-n", ns, "route", "show", "default").stdout == "", "no router by DHCP"
    gw4 = gateway(w.c, 2, w.gid_b)["gateway4"]
    sh("ip", "-n", ns, "route", "add", "default", "via", gw4)  # as root, by hand: still nothing
    assert net.probe(ns, outside=(OUTSIDE4, PORT)) == {"outside": None}
