"""`mtu: auto` fits the underlay family: the tap's MTU is the underlay's
minus 50 on IPv4 (Ethernet 14 + vxvde 8 + UDP 8 + IPv4 20) and minus 70 on
IPv6 (IPv6 40), so that a full-size frame leaves in one unfragmented packet.

    h1: bob 198.51.100.1 ---- vxvde over IPv4 or IPv6, MTU 1500 ---- h2: bob 198.51.100.2
"""

from __future__ import annotations

import pytest
from endpoints import pings
from observe import ip_counters
from provisioned import add_addr, link
from runtrace import RunTrace, running_cluster


@pytest.mark.parametrize(("version", "tap_mtu", "frag_key"), [(4, 1450, "IpFragCreates"),
                                                                (6, 1430, "Ip6FragCreates")])
def test_auto_mtu_frames_leave_unfragmented(version: int, tap_mtu: int, frag_key: str,
                                            nothing_of_the_run_left: list[RunTrace]) -> None:
    with running_cluster(hosts=2, config=f"network:\n  ip_version: {version}\n",
                         traces=nothing_of_the_run_left) as c:
        group = f"vxa{c.tag}"
        c.group(group)
        bob = c.user("bob", group)
        c.start(1)
        c.start(2)
        ns = {i: c.open(i, bob) for i in (1, 2)}
        for i in (1, 2):
            add_addr(ns[i], f"198.51.100.{i}/24")
        info = link(ns[1], "vde0")
        assert info is not None and info["mtu"] == tap_mtu, info
        assert pings(c.lan, ns[1], "198.51.100.2")
        before = ip_counters(c.lan, c.lan.host(1))[frag_key]
        # A full-size packet that may not be fragmented inside the VLAN (DF) ...
        res = c.lan.run(ns[1], "ping", "-c3", "-i0.1", "-W2", "-M", "do", "-s", str(tap_mtu - 28),
                        "198.51.100.2", check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        # ... and its datagram was not fragmented on the underlay either.
        assert ip_counters(c.lan, c.lan.host(1))[frag_key] == before
