"""Faults of a gateway: dnsmasq killed, the daemon killed, the gateway down
at a login, a client flooding the DHCP server, the VLAN leaving the file.

One cluster for the module; the tests run in file order and each leaves the
gateway of VLAN A (served by h1) running for the next.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Iterator

import pytest
from lan import REPO, sh, wait_for
from vlanlan import (
    SUBNET_A,
    World,
    addresses,
    dhcp,
    dnsmasq_pids,
    gateway,
    gateways,
    in_ns,
    leaf,
    vlan_world,
    wait_addr,
    wait_addrs,
)

from vxvdex.daemon import netns
from vxvdex.services import dnsmasq
from vxvdex.services.dhcp import WAITING

FLOOD = str(REPO / "tests" / "netns" / "dhcpflood.py")


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with vlan_world() as w:
        w.c.start_all()
        yield w


def login(w: World, host: int, base: str) -> tuple[str, str]:
    return w.login(host, base, w.group_a)


def gw_ns(w: World) -> str:
    return w.gw_ns(1, w.gid_a)


def mac_of(ns: str, ifname: str) -> str:
    return str(sh("ip", "-n", ns, "-br", "link", "show", ifname).stdout.split()[2])


def lease_lines(w: World) -> list[str]:
    return sorted(dnsmasq.lease_path(w.c.state_dir(1), w.gid_a).read_text().splitlines())


def restarted(w: World, old: int) -> dict | None:
    gw = gateway(w.c, 1, w.gid_a)
    return gw if gw["dnsmasq_alive"] and gw["dnsmasq_pid"] != old else None


def test_dnsmasq_killed_is_restarted_with_its_leases(world: World) -> None:
    w = world
    clients = [login(w, h, f"k{h}") for h in (1, 2, 3)]
    got = wait_addrs([ns for _user, ns in clients])
    before = lease_lines(w)
    assert len(before) >= 3
    old = gateway(w.c, 1, w.gid_a)["dnsmasq_pid"]
    sh("kill", "-KILL", str(old))
    gw = wait_for(lambda: restarted(w, old), timeout=10, what="dnsmasq restarted")
    assert gw["dnsmasq_restarts"] >= 1 and dnsmasq_pids(gw_ns(w)) == [gw["dnsmasq_pid"]]
    assert lease_lines(w) == before, "the restart lost no lease"
    # The new dnsmasq knows them: a newcomer asking for a leased address gets another one...
    ns, tap = leaf(w.c, 3, w.gid_a, "newcomer")
    taken = got[clients[0][1]]
    fresh = dhcp(w.c, ns, "newcomer", 10, tap, "-r", taken)
    assert fresh != taken
    # ...and a known client gets its own again at its next login.
    user, ns = clients[1]
    assert w.c.ask(2, f"remove {user} force").status == "ok"
    assert wait_addr(w.c.open(2, user)) == got[ns]


def test_the_gateways_endpoint_killed_is_restarted(world: World) -> None:
    w = world
    old = gateway(w.c, 1, w.gid_a)["endpoint_pid"]
    sh("kill", "-KILL", str(old))

    def replaced() -> dict | None:
        gw = gateway(w.c, 1, w.gid_a)
        return gw if gw["endpoint_alive"] and gw["endpoint_pid"] != old else None
    wait_for(replaced, timeout=10, what="the gateway's endpoint restarted")
    _user, ns = login(w, 3, "afterep")
    assert ipaddress.IPv4Address(wait_addr(ns)) in ipaddress.IPv4Network(SUBNET_A)


def test_daemon_killed_readopts_the_gateway(world: World) -> None:
    w = world
    before = gateway(w.c, 1, w.gid_a)
    leases = lease_lines(w)
    w.c.daemons[1].kill()
    w.c.daemons[1].wait()
    w.c.start(1)
    after = gateway(w.c, 1, w.gid_a)
    assert (after["dnsmasq_pid"], after["endpoint_pid"]) == (before["dnsmasq_pid"], before["endpoint_pid"])
    assert after["mac"] == before["mac"], "the gateway's MAC is stable"
    assert after["dnsmasq_alive"] and dnsmasq_pids(gw_ns(w)) == [before["dnsmasq_pid"]], "not duplicated"
    assert "adopted dnsmasq" in w.c.log(1)
    assert lease_lines(w) == leases
    _user, ns = login(w, 2, "afterkill")
    assert ipaddress.IPv4Address(wait_addr(ns)) in ipaddress.IPv4Network(SUBNET_A)


def test_a_login_while_the_gateway_is_down_gets_its_address_when_it_is_back(world: World) -> None:
    w = world
    w.c.lan.stop(w.c.daemons[1])  # no daemon to restart dnsmasq...
    for pid in dnsmasq_pids(gw_ns(w)):
        sh("kill", "-KILL", str(pid))  # ...and the gateway is down
    wait_for(lambda: not dnsmasq_pids(gw_ns(w)), what="dnsmasq gone")
    user, ns = login(w, 2, "early")  # the login opens at once, link-local only
    wait_for(lambda: addresses(ns, "inet6", "link"), what="vde0's link-local address")
    status = w.c.ask(2, f"status {user}").json()
    assert status["ports"][0]["dhcp"]["state"] == WAITING and addresses(ns, "inet") == []
    w.c.start(1)
    assert ipaddress.IPv4Address(wait_addr(ns, timeout=40)) in ipaddress.IPv4Network(SUBNET_A)


def test_a_flooding_client_does_not_stop_others(world: World) -> None:
    w = world
    bad_ns, tap = leaf(w.c, 3, w.gid_a, "flood")
    flood = subprocess.Popen(in_ns(bad_ns, sys.executable, FLOOD, tap, mac_of(bad_ns, tap), "8"),
                             stdout=subprocess.PIPE, text=True)
    try:
        others = [login(w, h, f"calm{h}") for h in (1, 2, 3)]
        got = wait_addrs([ns for _user, ns in others])
    finally:
        sent = flood.communicate(timeout=30)[0]
    assert len(set(got.values())) == 3
    assert int(sent) > 1000, "the flood was one"
    assert gateway(w.c, 1, w.gid_a)["dnsmasq_alive"]


def test_one_tap_cannot_take_the_pool_in_the_names_of_made_up_clients(world: World) -> None:
    w = world
    bad_ns, tap = leaf(w.c, 3, w.gid_a, "starve")
    before = len(lease_lines(w))
    pool = ipaddress.IPv4Network(SUBNET_A)
    count = str(pool.num_addresses - 3)  # every address of the DHCP range
    sent = sh(*in_ns(bad_ns, sys.executable, FLOOD, tap, mac_of(bad_ns, tap), "spoof", str(pool[2]), count))
    assert int(sent.stdout) == 61
    _user, ns = login(w, 2, "victim")
    assert ipaddress.IPv4Address(wait_addr(ns)) in pool
    assert len(lease_lines(w)) <= before + 1, "no lease for a made-up client"


def test_a_vlan_that_leaves_the_file_loses_its_gateway_but_not_its_leases(world: World) -> None:
    w = world
    leases = lease_lines(w)
    name = gw_ns(w)
    w.c.lan.stop(w.c.daemons[1])
    w.c.extra_config = (f"hosts: [h1, h2, h3]\nvlans:\n  {w.group_b}: {{subnet: 192.0.2.192/26, "
                        "server: h2}\n")
    w.c.start(1)
    assert gateways(w.c, 1) == []
    assert not netns.exists(name) and dnsmasq_pids(name) == []
    assert lease_lines(w) == leases, "the leases stay on disk"
