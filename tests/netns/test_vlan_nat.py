"""Egress nat of a VLAN (vxvdex/services/nat.py), with real traffic.

Gateways are built by hand here (tests/netns/natnet.py): these tests check
the veth, the forwarding and the nftables table on their own. The serving
host is h1 of the simulated LAN; "outside" is a namespace on the LAN beyond
h1's uplink. Every "must not reach" is checked next to a control showing the
same listener answers where it should, so a timeout cannot pass for a block.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lan import Lan
from natnet import OUTSIDE4, OUTSIDE6, NatNet, next_line

HOST4, HOST_OTHER4, LINK_HOST = "192.0.2.1", "192.0.2.201", "169.254.88.1"
PRIVATE_NET, PRIVATE4 = "192.0.2.224/28", "192.0.2.226"  # a network behind h1 (e.g. containers)
SSH, WEB = 22, 8080


@pytest.fixture
def net() -> Iterator[NatNet]:
    with Lan(hosts=2) as lan:
        nn = NatNet(lan)
        try:
            yield nn
        finally:
            nn.natctl("remove-all", check=False)


def host_listening(net: NatNet) -> str:
    """h1 listens on every address (its "sshd" and a web port), has an
    address beyond its uplink's and a private network behind it (a
    namespace on a veth, listening too); the outside listens. Returns the
    private namespace."""
    net.lan.ip(net.host, "addr", "add", f"{HOST_OTHER4}/32", "dev", "lo")
    priv = net.lan.add_ns("priv")
    net.lan.ip(net.host, "link", "add", "priv0", "type", "veth", "peer", "name", "eth0", "netns", priv)
    net.lan.ip(net.host, "addr", "add", f"{PRIVATE4[:-1]}5/28", "dev", "priv0")
    net.lan.ip(net.host, "link", "set", "priv0", "up")
    net.lan.ip(priv, "link", "set", "eth0", "up")
    net.lan.ip(priv, "addr", "add", f"{PRIVATE4}/28", "dev", "eth0")
    net.lan.ip(priv, "route", "add", "default", "via", f"{PRIVATE4[:-1]}5")
    net.lan.ip(net.outside, "route", "add", PRIVATE_NET, "via", HOST4)
    net.serve(net.host, "host", SSH, WEB)
    net.serve(net.outside, "outside", WEB)
    net.serve(priv, "private", WEB)
    return priv


def test_a_nat_vlan_reaches_the_outside_and_nothing_of_the_serving_host(net: NatNet) -> None:
    priv = host_listening(net)
    a = net.vlan(4101, "192.0.2.128/27")
    net.attach(a)
    got = net.probe(a.clients[0], outside=(OUTSIDE4, WEB), ssh=(HOST4, SSH), web=(HOST4, WEB),
                    other=(HOST_OTHER4, WEB), link=(LINK_HOST, WEB), private=(PRIVATE4, WEB))
    # Masqueraded: the outside sees the serving host's uplink address.
    assert got.pop("outside") == f"outside {HOST4}"
    assert got == {"ssh": None, "web": None, "other": None, "link": None, "private": None}
    # Control: the very same listeners answer from the host's own side.
    assert net.probe(net.outside, ssh=(HOST4, SSH), other=(HOST_OTHER4, WEB)) == {
        "ssh": f"host {OUTSIDE4}", "other": f"host {OUTSIDE4}"}
    assert net.probe(priv, link=(LINK_HOST, WEB)) == {"link": f"host {PRIVATE4}"}
    # One way too (UDP: no reply needed): nothing arrives before a marker
    # the outside sends afterwards.
    listener = net.listen_udp(net.host, 9999)
    net.send_udp(a.clients[0], 9999, "from-the-vlan", HOST4, HOST_OTHER4, LINK_HOST, str(a.spec.gateway4))
    net.send_udp(net.outside, 9999, "marker", HOST4)
    assert next_line(listener) == "marker"
    listener = net.listen_udp(priv, 9999)
    net.send_udp(a.clients[0], 9999, "from-the-vlan", PRIVATE4)
    net.send_udp(net.host, 9999, "marker", PRIVATE4)
    assert next_line(listener) == "marker"


def test_the_hosts_other_networks_stay_unforwarded(net: NatNet) -> None:
    """h1 did not forward before: turning forwarding on for the uplink (for
    the VLAN's replies) lets nothing from the LAN into a network behind it.
    One-way (UDP): the network's replies would not be forwarded anyway."""
    priv = host_listening(net)
    listener = net.listen_udp(priv, 9999)
    a = net.vlan(4101, "192.0.2.128/27")
    net.attach(a)
    net.send_udp(net.outside, 9999, "while-attached", PRIVATE4)
    # Control, by the same path: the uplink forwarding as attach() set it, without our table.
    net.natctl("remove-all")
    net.lan.run(net.host, "sysctl", "-qw", "net.ipv4.conf.eth0.forwarding=1")
    net.send_udp(net.outside, 9999, "control", PRIVATE4)
    assert next_line(listener) == "control"


def test_nothing_enters_a_nat_vlan_that_it_did_not_start(net: NatNet) -> None:
    a = net.vlan(4101, "192.0.2.128/27", clients=2)
    net.attach(a)
    net.serve(a.clients[0], "client", WEB)
    # The outside, even with a route to the VLAN through the serving host,
    # and the serving host itself (its local users are not VLAN members).
    net.lan.ip(net.outside, "route", "add", str(a.subnet), "via", HOST4)
    target = (a.client_addr(0), WEB)
    assert net.probe(net.outside, c=target) == {"c": None}
    assert net.probe(net.host, c=target) == {"c": None}
    assert net.probe(net.lan.host(2), c=target) == {"c": None}
    # Control: a peer on the VLAN reaches it.
    assert net.probe(a.clients[1], c=target) == {"c": f"client {a.client_addr(1)}"}
    # One way too (UDP: no reply needed): nothing arrives before a marker
    # a peer sends afterwards.
    listener = net.listen_udp(a.clients[0], 9999)
    for ns in (net.host, net.outside, net.lan.host(2)):
        net.send_udp(ns, 9999, f"from-{ns}", a.client_addr(0))
    net.send_udp(a.clients[1], 9999, "marker", a.client_addr(0))
    assert next_line(listener) == "marker"


def test_two_nat_vlans_on_one_server_never_reach_each_other(net: NatNet) -> None:
    net.serve(net.outside, "outside", WEB)
    a, b = net.vlan(4101, "192.0.2.128/27", clients=2), net.vlan(4102, "192.0.2.160/27", clients=2)
    net.attach(a)
    net.attach(b)
    for v in (a, b):
        net.serve(v.clients[0], f"client{v.gid}", WEB)
        net.serve(v.gw_ns, f"gw{v.gid}", WEB)
    for src, dst in ((a, b), (b, a)):
        got = net.probe(src.clients[1], outside=(OUTSIDE4, WEB), peer=(dst.client_addr(0), WEB),
                        gw=(str(dst.spec.gateway4), WEB), own=(src.client_addr(0), WEB))
        assert got == {"outside": f"outside {HOST4}", "peer": None, "gw": None,
                       "own": f"client{src.gid} {src.client_addr(1)}"}, f"from VLAN {src.gid}"


def test_a_vlan_cannot_send_as_another(net: NatNet) -> None:
    """A client of A that takes a source address of B (or of the outside) is
    not forwarded: the replies would land in B (or leave the host as if it
    spoke for that address)."""
    a, b = net.vlan(4101, "192.0.2.128/27"), net.vlan(4102, "192.0.2.160/27")
    net.attach(a)
    net.attach(b)
    listener = net.listen_udp(net.outside, 9999)
    for i, spoofed in enumerate((b.client_addr(0), "192.0.2.50")):
        net.lan.ip(a.clients[0], "addr", "add", f"{spoofed}/32", "dev", "eth0")
        net.send_udp(a.clients[0], 9999, f"spoofed{i}", OUTSIDE4, source=spoofed)
    net.send_udp(a.clients[0], 9999, "marker", OUTSIDE4, source=a.client_addr(0))
    assert next_line(listener) == "marker"


def test_egress_none_forwards_nothing(net: NatNet) -> None:
    host_listening(net)
    a, c = net.vlan(4101, "192.0.2.128/27"), net.vlan(4103, "192.0.2.192/27")
    net.attach(a)
    net.natctl("detach", str(c.gid))  # what the gateway does for `egress: none`
    net.serve(a.clients[0], "clientA", WEB)
    net.serve(c.gw_ns, "gwC", WEB)
    assert net.lan.ip(net.host, "link", "show", "dev", f"vxgw{c.gid}", check=False).returncode != 0
    assert net.lan.ip(c.gw_ns, "link", "show", "dev", "up0", check=False).returncode != 0
    got = net.probe(c.clients[0], outside=(OUTSIDE4, WEB), ssh=(HOST4, SSH), other=(HOST_OTHER4, WEB),
                    link=(LINK_HOST, WEB), a=(a.client_addr(0), WEB), gw=(str(c.spec.gateway4), WEB))
    assert got == {"outside": None, "ssh": None, "other": None, "link": None, "a": None,
                   "gw": f"gwC {c.client_addr(0)}"}
    # Control: the nat VLAN next to it does reach the outside.
    assert net.probe(a.clients[0], o=(OUTSIDE4, WEB)) == {"o": f"outside {HOST4}"}


def test_ipv6_does_not_leave_the_vlan(net: NatNet) -> None:
    """The VLAN's prefix is a ULA: no NAT66, nothing forwarded over IPv6."""
    net.serve(net.outside, "outside", WEB)
    a = net.vlan(4101, "192.0.2.128/27")
    net.attach(a)
    # Even where the gateway and the host forward IPv6 and the outside routes the prefix back.
    net.lan.run(a.gw_ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    net.lan.run(net.host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    net.lan.ip(net.outside, "-6", "route", "add", str(a.spec.prefix6), "via", "2001:db8::1")
    got = net.probe(a.clients[0], v6=(OUTSIDE6, WEB), v4=(OUTSIDE4, WEB))
    assert got == {"v6": None, "v4": f"outside {HOST4}"}
    for ns, ifname in ((a.gw_ns, "up0"), (net.host, f"vxgw{a.gid}")):
        assert net.lan.ip(ns, "-6", "addr", "show", "dev", ifname).stdout == "", "no IPv6 on the veth"


def test_attach_again_and_remove_all_touch_nothing_else(net: NatNet) -> None:
    net.serve(net.outside, "outside", WEB)
    net.lan.run(net.host, "nft", "add table inet someone_else")
    net.lan.run(net.host, "nft", "add chain inet someone_else c "
                "{ type filter hook forward priority 0; policy accept; }")
    a = net.vlan(4101, "192.0.2.128/27")
    for _ in range(2):  # a daemon restart re-adopting the gateway calls it again
        net.attach(a)
    assert net.natctl("attached").stdout.split() == [str(a.gid)]
    assert net.probe(a.clients[0], o=(OUTSIDE4, WEB)) == {"o": f"outside {HOST4}"}
    net.natctl("detach", str(a.gid))  # egress changed to none
    assert net.probe(a.clients[0], o=(OUTSIDE4, WEB)) == {"o": None}
    net.attach(a)
    assert net.probe(a.clients[0], o=(OUTSIDE4, WEB)) == {"o": f"outside {HOST4}"}
    net.natctl("remove-all")
    net.natctl("remove-all")
    tables = net.lan.run(net.host, "nft", "list", "tables").stdout.split()
    assert "vxvdex_egress" not in tables and "someone_else" in tables
    assert "vxgw" not in net.lan.ip(net.host, "link", "show").stdout
    fwd = net.lan.run(net.host, "cat", "/proc/sys/net/ipv4/conf/eth0/forwarding").stdout.strip()
    assert fwd == "0", "the uplink forwards again as it did before"
    assert net.probe(a.clients[0], o=(OUTSIDE4, WEB)) == {"o": None}
