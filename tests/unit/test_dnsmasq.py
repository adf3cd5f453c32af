"""dnsmasq's command line for a VLAN: what the policy asks, nothing more."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from vxvdex.services import dnsmasq
from vxvdex.services.vlans import Vlan, ula_prefix

# Given: a package build root has no dnsmasq user (dnsmasq-base is only recommended).
GROUP = "nogroup"


def vlan(egress: str) -> Vlan:
    return Vlan(gid=1234, group="students", subnet=ipaddress.IPv4Network("192.0.2.0/24"),
                prefix6=ula_prefix(1234), server="node1", egress=egress, domain="students.vx")


def test_egress_none_announces_no_router_and_forwards_no_name() -> None:
    args = dnsmasq.command(vlan("none"), Path("/s"), GROUP)
    assert "--no-resolv" in args and "--dhcp-option=option:router" in args
    assert "--ra-param=vde0,10,0" in args, "router lifetime 0"
    assert not any(a.startswith("--resolv-file") for a in args)


def test_egress_nat_is_the_default_router_and_forwards() -> None:
    args = dnsmasq.command(vlan("nat"), Path("/s"), GROUP)
    assert "--no-resolv" not in args and "--dhcp-option=option:router" not in args
    assert "--ra-param=vde0,10" in args and "--resolv-file=/etc/resolv.conf" in args


def test_the_vlan_alone_with_leases_in_the_state_dir() -> None:
    args = dnsmasq.command(vlan("none"), Path("/s"), GROUP)
    assert {"--interface=vde0", "--except-interface=lo", "--bind-dynamic"} <= set(args)
    assert "--dhcp-range=192.0.2.2,192.0.2.254,255.255.255.0,12h" in args
    assert "--dhcp-leasefile=/s/leases/1234.leases" in args
    assert "--host-record=gw.students.vx,192.0.2.1,fd78:6400:4d2::1" in args
    assert "--dhcp-range=fd78:6400:4d2::,ra-only,64" in args
    assert "--user=dnsmasq" in args and "--conf-file=/dev/null" in args


def test_leases_in_force_are_counted(tmp_path: Path) -> None:
    (tmp_path / "leases").mkdir()
    (tmp_path / "leases" / "1234.leases").write_text(
        "2000000000 02:00:00:00:00:01 192.0.2.2 a-h1 01:02:00:00:00:00:01\n"
        "1000 02:00:00:00:00:02 192.0.2.3 b-h1 *\n"
        "0 02:00:00:00:00:03 192.0.2.4 * *\n"
        "duid 00:01\n")
    assert dnsmasq.count_leases(tmp_path, 1234, now=1500000000) == 2
    assert dnsmasq.count_leases(tmp_path, 99) == 0
    assert os.path.exists(dnsmasq.lease_path(tmp_path, 1234))
