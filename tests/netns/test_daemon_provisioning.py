"""vxvdexd provisions managed users: a namespace visible to `ip netns`, lo up,
a tap vde0 (MTU of the underlay minus 50, a MAC stable per host and user) on
the VLAN of the user's gid; unmanaged users and root are left alone.

    h1: alice (gid A)          h2: bob (gid A), carol (gid B)       h3: erin (gid B)
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

from capture import Capture
from cluster import Cluster
from endpoints import pings
from observe import send_udp
from provisioned import add_addr, link, netns_names, ns_inode, ping_once, pinned, port, status

from vxvdex import control

OVERLAY_MTU = 1500 - 50


def test_open_provisions_namespace_lo_and_tap(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    gid = cluster.group(group)
    alice = cluster.user("alice", group)
    cluster.start_all()
    macs = {}
    for host in (1, 2):
        answer = control.ask(cluster.run_dir(host), f"open {alice} s1")
        assert answer.status == "ok" and answer.fd is not None, answer
        name = answer.text
        try:
            assert os.fstat(answer.fd).st_ino == ns_inode(name), "the passed fd is the namespace"
        finally:
            os.close(answer.fd)
        assert name == cluster.netns_name(host, alice)
        assert name in netns_names() and pinned(name)
        lo, tap = link(name, "lo"), link(name, "vde0")
        assert lo is not None and "UP" in lo["flags"]
        assert tap is not None and "UP" in tap["flags"], tap
        assert tap["mtu"] == OVERLAY_MTU
        st = status(cluster, host, alice)
        assert (st["netns"], st["pinned"], st["sessions"], st["gid"]) == (name, True, ["s1"], gid)
        (p,) = st["ports"]
        assert (p["ifname"], p["vlan_gid"], p["mtu"], p["mac"]) == ("vde0", gid, OVERLAY_MTU, tap["address"])
        assert p["endpoint_alive"] and p["restarts"] == 0
        macs[host] = tap["address"]
    assert macs[1] != macs[2], "each host has its own MAC for a user"
    assert int(macs[1].split(":")[0], 16) & 0x03 == 0x02, "locally administered unicast"


def test_mac_is_stable_across_close_reopen_and_restart(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    alice = cluster.user("alice", group)
    cluster.start(1)
    name = cluster.open(1, alice)
    mac = link(name, "vde0")["address"]  # type: ignore[index]
    assert cluster.ask(1, f"close {alice} s1").status == "ok"
    assert cluster.open(1, alice, "s2") == name
    assert link(name, "vde0")["address"] == mac  # type: ignore[index]

    cluster.lan.stop(cluster.daemons[1])  # a clean stop; the namespace stays
    cluster.start(1)
    assert port(cluster, 1, alice)["mac"] == mac
    assert cluster.open(1, alice, "s3") == name
    assert link(name, "vde0")["address"] == mac  # type: ignore[index]


def test_unmanaged_user_and_root_are_left_alone(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    dave = cluster.user("dave", group, managed=False)
    cluster.start(1)
    ours = cluster.lan.prefix + "-"
    before = {n for n in netns_names() if n.startswith(ours)}
    for who in (dave, "root"):
        answer = control.ask(cluster.run_dir(1), f"open {who} s1")
        assert (answer.status, answer.fd) == ("unmanaged", None), answer
        assert cluster.ask(1, f"status {who}").status == "unmanaged"
    for who in (dave, "root"):
        assert cluster.netns_name(1, who) not in netns_names() and not pinned(cluster.netns_name(1, who))
    assert {n for n in netns_names() if n.startswith(ours)} == before, "no namespace at all"
    assert cluster.ask(1, "list").json() == []


def test_same_gid_is_one_lan_other_gid_sees_nothing(cluster: Cluster, tmp_path: Path) -> None:
    ga, gb = f"vxa{cluster.tag}", f"vxb{cluster.tag}"
    cluster.group(ga)
    cluster.group(gb)
    alice, bob = cluster.user("alice", ga), cluster.user("bob", ga)
    carol, erin = cluster.user("carol", gb), cluster.user("erin", gb)
    cluster.start_all()
    ns = {alice: cluster.open(1, alice), bob: cluster.open(2, bob),
          carol: cluster.open(2, carol), erin: cluster.open(3, erin)}
    ip = {alice: "198.51.100.1", bob: "198.51.100.2", carol: "198.51.100.3", erin: "198.51.100.4"}
    for user, name in ns.items():
        add_addr(name, f"{ip[user]}/24")
    assert port(cluster, 2, carol)["vlan_gid"] == grp.getgrnam(gb).gr_gid
    assert pings(cluster.lan, ns[alice], ip[bob]), "same gid, two hosts: one LAN"
    assert pings(cluster.lan, ns[carol], ip[erin]), "the other gid's LAN works too"
    macs = {u: bytes.fromhex(link(n, "vde0")["address"].replace(":", "")) for u, n in ns.items()}  # type: ignore[index]

    cap = Capture(cluster.lan, ns[carol], "vde0", tmp_path / "carol.cap")
    try:
        assert not ping_once(cluster, ns[alice], ip[carol], wait=1), "another gid is unreachable"
        assert not ping_once(cluster, ns[bob], ip[carol], wait=1), "even on the same host"
        for user in (alice, bob):
            send_udp(cluster.lan, ns[user], "198.51.100.255", 5004, 100, b"VXGIDA", broadcast=True)
            send_udp(cluster.lan, ns[user], ip[carol], 5004, 100, b"VXGIDA")
        send_udp(cluster.lan, ns[erin], "198.51.100.255", 5004, 1, b"VXGIDBEND", broadcast=True)
        cap.wait_for(lambda f: f.incoming and b"VXGIDBEND" in f.data, what="gid B's sentinel")
    finally:
        frames = cap.stop()
    incoming = [f for f in frames if f.incoming]
    assert any(f.src == macs[erin] for f in incoming), "control: carol's tap hears her own LAN"
    assert [f for f in incoming if f.src in (macs[alice], macs[bob])] == []
    assert [f for f in incoming if b"VXGIDA" in f.data] == []
