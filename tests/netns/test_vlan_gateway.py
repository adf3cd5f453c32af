"""The gateway of a served VLAN: addresses, names and router advertisements.

    h1: gateway of VLAN A (egress none)     h2: gateway of VLAN B
    h1, h2, h3: users of A (20 of them) and of B

One cluster for the module (three daemons, two VLANs): each test adds its
own users, so the tests share the daemons but not their subjects.
"""

from __future__ import annotations

import grp
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from lan import sh
from vlanlan import (
    SUBNET_A,
    SUBNET_B,
    World,
    dnsmasq_pids,
    gateway,
    lookup,
    resolve,
    vlan_world,
    wait_addr,
    wait_addrs,
    wait_ula,
)

from vxvdex.daemon import netns
from vxvdex.services import dnsmasq
from vxvdex.services.vlans import default_domain, ula_prefix


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with vlan_world() as w:
        w.c.start_all()
        yield w


def login(w: World, host: int, base: str, group: str) -> tuple[str, str]:
    return w.login(host, base, group)


def domain_a(w: World) -> str:
    return default_domain(w.group_a)


def test_the_serving_host_runs_the_gateway(world: World) -> None:
    w = world
    gw = gateway(w.c, 1, w.gid_a)
    assert gw["dnsmasq_alive"] and gw["endpoint_alive"], gw
    assert (gw["netns"], gw["subnet"], gw["egress"]) == (w.gw_ns(1, w.gid_a), SUBNET_A, "none")
    assert [g["vlan_gid"] for g in json.loads(w.c.ask(2, "gateways").text)] == [w.gid_b]
    assert json.loads(w.c.ask(3, "gateways").text) == []
    assert len(dnsmasq_pids(gw["netns"])) == 1
    inside = sh("ip", "netns", "pids", gw["netns"]).stdout.split()
    assert inside == [str(gw["dnsmasq_pid"])], "dnsmasq alone: no DHCP client in a gateway"
    # Least privilege: dnsmasq runs as its own user, the lease directory stays root's.
    status = Path(f"/proc/{gw['dnsmasq_pid']}/status").read_text()
    uid = next(line.split()[1:4] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == [str(dnsmasq.uid())] * 3
    caps = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    allowed = 1 << 10 | 1 << 12 | 1 << 13  # net_bind_service, net_admin, net_raw
    assert caps & ~allowed == 0, f"dnsmasq keeps {caps:#x}"
    link = json.loads(sh("ip", "-n", gw["netns"], "-j", "link", "show", "vde0").stdout)[0]
    assert link["address"] == gw["mac"]
    leases = w.c.state_dir(1) / "leases"
    assert (leases.stat().st_uid, leases.stat().st_mode & 0o022) == (0, 0)


def test_twenty_users_across_hosts_get_distinct_addresses_and_names(world: World) -> None:
    w = world
    logins = [(h, *login(w, h, f"u{i}", w.group_a)) for i in range(20) for h in [1 + i % 3]]
    got = wait_addrs([ns for _h, _user, ns in logins])
    addrs = list(got.values())
    assert len(set(addrs)) == 20, addrs
    net = ipaddress.IPv4Network(SUBNET_A)
    assert all(ipaddress.IPv4Address(a) in net and a != str(net.network_address + 1) for a in addrs)
    gw_ns = gateway(w.c, 1, w.gid_a)
    assert gw_ns["leases"] >= 20
    # Names of peers on other hosts, and of the gateway, from h3.
    _h, user0, ns0 = logins[0]
    _h, _user, ns2 = logins[2]
    gw4 = gw_ns["gateway4"]
    assert resolve(ns2, f"{user0}-h1.{domain_a(w)}", gw4) == got[ns0]
    assert resolve(ns0, f"gw.{domain_a(w)}", gw4) == gw4
    # egress none: names outside the domain are refused, not forwarded.
    assert "REFUSED" in lookup(ns0, "debian.org", gw4)


def test_ula_addresses_by_router_advertisements(world: World) -> None:
    w = world
    _user, ns = login(w, 3, "ra", w.group_b)
    prefix = str(ula_prefix(w.gid_b))
    addr = wait_ula(ns, prefix)
    assert ipaddress.IPv6Address(addr) in ipaddress.IPv6Network(prefix)
    # egress none: the gateway is no default router (router lifetime 0).
    routes = os.popen(f"ip -n {ns} -6 route show default").read()
    assert routes.strip() == ""


def test_the_same_address_after_logout_and_login(world: World) -> None:
    w = world
    user, ns = login(w, 2, "again", w.group_a)
    first = wait_addr(ns)
    answer = w.c.ask(2, f"remove {user} force")
    assert answer.status == "ok", answer.text
    assert not netns.exists(ns)
    ns = w.c.open(2, user)
    assert wait_addr(ns) == first


def test_vlan_b_is_apart(world: World) -> None:
    w = world
    _user, ns = login(w, 1, "bee", w.group_b)
    addr = wait_addr(ns)
    assert ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(SUBNET_B)
    assert grp.getgrnam(w.group_b).gr_gid == w.gid_b


def test_list_shows_the_gateways_and_their_leases(world: World) -> None:
    w = world
    _user, ns = login(w, 3, "listed", w.group_b)
    wait_addr(ns)
    res = w.c.session(2, "--json", "list")
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    gws = [e for e in listed if e.get("kind") == "gateway"]
    assert [g["netns"] for g in gws] == [w.gw_ns(2, w.gid_b)]
    assert gws[0]["leases"] == len(dnsmasq.lease_path(w.c.state_dir(2), w.gid_b).read_text().splitlines())
    assert gws[0]["leases"] >= 1
    text = w.c.session(2, "list").stdout
    assert f"gateway {w.gw_ns(2, w.gid_b)}: VLAN {w.group_b} (gid {w.gid_b})" in text
    assert f"leases {gws[0]['leases']} " in text and "dnsmasq pid" in text
    assert "\ngateway " not in w.c.session(3, "list").stdout, "h3 serves no VLAN"
