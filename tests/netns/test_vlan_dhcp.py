"""DHCP clients in users' namespaces on served VLANs (issue 13, item 4):
the address arrives without the login waiting for it, is the same at the
next login, comes with a resolv.conf pointing at the gateway; unserved
VLANs get no client at all. The gateway is dnsmasq in a leaf (dhcpgw.py).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster
from dhcpgw import SUBNET, Gateway, served_alice, vlans_config
from lan import sh, wait_for
from provisioned import port

DOMAIN = "students.vx"


@pytest.fixture
def served(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[Cluster, str, Gateway]]:
    """h1 with alice on a served VLAN whose gateway (dnsmasq) is on h2, not yet attached."""
    alice, gw = served_alice(cluster, tmp_path, DOMAIN)
    yield cluster, alice, gw
    gw.stop_serving()


def dhcp(c: Cluster, user: str, ifname: str = "vde0") -> dict:
    service: dict = port(c, 1, user, ifname)["dhcp"]
    return service


def bound(c: Cluster, user: str, timeout: float = 30, ifname: str = "vde0") -> dict:
    return wait_for(lambda: (s := dhcp(c, user, ifname))["state"] == "bound" and s, timeout=timeout,
                    what=f"a DHCP lease for {user} ({c.log(1)[-1500:]})")


def addr4(ns: str, ifname: str = "vde0") -> list[str]:
    out = sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", ifname).stdout
    return [ln.split()[3] for ln in out.splitlines()]


def timed_open(c: Cluster, user: str) -> tuple[str, float]:
    t0 = time.monotonic()
    ns = c.open(1, user)
    return ns, time.monotonic() - t0


def test_address_arrives_and_stays_the_same_after_relogin(served: tuple[Cluster, str, Gateway]) -> None:
    c, alice, gw = served
    ns, _ = timed_open(c, alice)
    gw.start(port(c, 1, alice)["url"])
    lease = bound(c, alice)
    address = ipaddress.IPv4Interface(lease["address"])
    assert address in SUBNET and address.ip != gw.gw4
    assert addr4(ns) == [str(address)]
    assert lease["server"] == str(gw.gw4) and lease["router"] == str(gw.gw4)
    assert lease["dns_domain"] == DOMAIN == lease["domain"] and lease["egress"] == "none"
    assert lease["gateway4"] == str(gw.gw4) and lease["lease_time"] == 3600
    assert lease["expires"] == lease["obtained"] + 3600
    assert lease["client_alive"]
    # dnsmasq knows the client by the tap's MAC as client id and by <user>-<host>
    leases = gw.leases.read_text()
    mac = port(c, 1, alice)["mac"]
    assert f" {address.ip} {alice}-h1 01:{mac}" in leases, leases
    resolv = Path(f"/etc/netns/{ns}/resolv.conf")
    assert resolv.read_text().splitlines()[1:] == [f"search {DOMAIN}", f"nameserver {gw.gw4}"]
    # what runs in the namespace through `vxvdex-session exec` sees it as /etc/resolv.conf
    seen = sh(*c.session_cmd(1, "exec", alice, "--", "cat", "/etc/resolv.conf")).stdout
    assert seen == resolv.read_text()
    # The IPv6 address comes from the gateway's router advertisements
    wait_for(lambda: any(a.startswith(str(gw.prefix6.network_address).rstrip(":"))
                         for a in dhcp(c, alice)["addresses6"]), timeout=20, what="an address from RA")

    c.session(1, "remove", alice, "--force", check=True)
    assert not resolv.exists() and not resolv.parent.exists()
    ns, _ = timed_open(c, alice)
    assert ipaddress.IPv4Interface(bound(c, alice)["address"]) == address
    assert addr4(ns) == [str(address)]


def test_login_does_not_wait_for_a_silent_gateway(served: tuple[Cluster, str, Gateway]) -> None:
    c, alice, gw = served
    ns, took = timed_open(c, alice)
    assert took < 2.0
    assert dhcp(c, alice)["state"] == "waiting for DHCP from the gateway"
    text = c.session(1, "status", alice, check=True).stdout
    assert "waiting for DHCP from the gateway" in text
    assert addr4(ns) == []
    gw.start(port(c, 1, alice)["url"])  # the gateway comes: the address follows
    lease = bound(c, alice, timeout=30)
    assert addr4(ns) == [lease["address"]]


def test_lease_is_renewed(cluster: Cluster, tmp_path: Path) -> None:
    """dnsmasq's shortest lease, 2 minutes: udhcpc renews after half of it."""
    alice, gw = served_alice(cluster, tmp_path, DOMAIN, lease="2m")
    ns = cluster.open(1, alice)
    gw.start(port(cluster, 1, alice)["url"])
    try:
        first = bound(cluster, alice)
        assert first["lease_time"] == 120 and first["event"] == "bound"
        renewed = wait_for(lambda: (d := dhcp(cluster, alice))["obtained"] > first["obtained"] and d,
                           timeout=100, what="a renewal")
        assert renewed["event"] == "renew" and renewed["address"] == first["address"]
        assert renewed["client_pid"] == first["client_pid"] and addr4(ns) == [first["address"]]
    finally:
        gw.stop_serving()


def test_unserved_vlan_gets_no_client(cluster: Cluster) -> None:
    ga, gb = f"vxa{cluster.tag}", f"vxb{cluster.tag}"
    cluster.group(ga)
    cluster.group(gb)
    bob = cluster.user("bob", gb)
    cluster.extra_config = vlans_config(ga)
    cluster.start(1)
    ns = cluster.open(1, bob)
    assert "dhcp" not in port(cluster, 1, bob)
    assert sh("ip", "netns", "pids", ns).stdout.split() == []
    assert not Path(f"/etc/netns/{ns}").exists()
