"""Faults vxvdexd repairs: an endpoint killed, the daemon killed and started
again, the tap deleted by hand, the namespace unpinned by hand.

    h1: alice 198.51.100.1  <- one VLAN ->  h2: alice 198.51.100.2
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from cluster import Cluster
from endpoints import pings
from lan import sh, wait_for
from provisioned import (
    add_addr,
    alive,
    endpoint_pids,
    is_up,
    link,
    ns_inode,
    ping_once,
    pinned,
    port,
    proc_ns_inode,
    sleeper,
    status,
)

from vxvdex import control

A1, A2 = "198.51.100.1", "198.51.100.2"


def pair(c: Cluster) -> tuple[str, str, str]:
    """alice on h1 and h2, on one VLAN, pinging; returns (alice, ns on h1, ns on h2)."""
    group = f"vxa{c.tag}"
    c.group(group)
    alice = c.user("alice", group)
    c.start(1)
    c.start(2)
    n1, n2 = c.open(1, alice), c.open(2, alice)
    add_addr(n1, f"{A1}/24")
    add_addr(n2, f"{A2}/24")
    assert pings(c.lan, n2, A1)
    return alice, n1, n2


def test_killed_endpoint_is_restarted_and_traffic_resumes(cluster: Cluster) -> None:
    alice, n1, n2 = pair(cluster)
    before = port(cluster, 1, alice)
    ifindex = link(n1, "vde0")["ifindex"]  # type: ignore[index]
    os.kill(before["endpoint_pid"], signal.SIGKILL)
    t0 = time.monotonic()
    # from the far side: h2 has learned the dead endpoint's port and must get over it
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.2), timeout=2.0, what="traffic to resume")
    assert time.monotonic() - t0 < 2.0
    after = port(cluster, 1, alice)
    assert after["endpoint_pid"] != before["endpoint_pid"] and after["endpoint_alive"]
    assert not alive(before["endpoint_pid"])
    assert (after["ifname"], after["mac"], after["restarts"]) == ("vde0", before["mac"], 1)
    tap = link(n1, "vde0")
    assert tap is not None and (tap["address"], tap["ifindex"]) == (before["mac"], ifindex)
    assert endpoint_pids(cluster, 1) == {after["endpoint_pid"]}


def replies(ping_output: str) -> list[float]:
    """Times (epoch) of the echo replies in the output of `ping -D`."""
    return [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", ping_output, re.M)]


def test_daemon_killed_and_restarted_sessions_keep_working(cluster: Cluster) -> None:
    alice, n1, n2 = pair(cluster)
    before = status(cluster, 1, alice)
    pid = before["ports"][0]["endpoint_pid"]
    ino = ns_inode(n1)
    ping = cluster.lan.spawn(n2, "ping", "-D", "-n", "-i", "0.05", "-c", "80", "-W", "1", A1, capture=True)
    time.sleep(0.5)
    killed = time.time()
    cluster.lan.stop(cluster.daemons[1], signal.SIGKILL)
    time.sleep(1.0)
    assert alive(pid), "endpoints outlive the daemon"
    with pytest.raises(control.DaemonUnavailable):
        control.ask(cluster.run_dir(1), "version")
    cluster.start(1)
    restarted = time.time()
    out, _ = ping.communicate(timeout=30)
    times = replies(out)
    assert len(times) >= 78, out[-400:]
    assert sum(killed < t < restarted for t in times) >= 10, "ping answered while the daemon was down"
    assert sum(t > restarted for t in times) >= 10, "and after it came back"

    after = status(cluster, 1, alice)
    assert after["ports"][0]["endpoint_pid"] == pid, "the same endpoint, re-adopted"
    assert after["ports"][0]["restarts"] == 0 and after["sessions"] == before["sessions"]
    assert "re-adopted" in cluster.log(1)
    answer = control.ask(cluster.run_dir(1), f"open {alice} s2")
    assert answer.fd is not None
    try:
        assert (answer.status, answer.text, os.fstat(answer.fd).st_ino) == ("ok", n1, ino)
    finally:
        os.close(answer.fd)
    assert endpoint_pids(cluster, 1) == {pid}

    # and the re-adopted endpoint is supervised again
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: port(cluster, 1, alice)["restarts"] == 1 and port(cluster, 1, alice)["endpoint_alive"],
             timeout=2.0, what="the adopted endpoint to be restarted")
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.2), timeout=2.0, what="traffic to resume")


def test_tap_deleted_by_hand_is_restored(cluster: Cluster) -> None:
    alice, n1, n2 = pair(cluster)
    mac = port(cluster, 1, alice)["mac"]
    sh("ip", "-n", n1, "link", "del", "vde0")
    res = cluster.session(1, "reprovision", alice)
    assert res.returncode == 0, res.stderr
    # reprovision, or the restart of the endpoint that lost its tap, brings it back
    wait_for(lambda: is_up(n1, "vde0"), timeout=2.0, what="vde0 to come back")
    tap = link(n1, "vde0")
    assert tap is not None and (tap["address"], tap["mtu"]) == (mac, 1450)
    wait_for(lambda: port(cluster, 1, alice)["endpoint_alive"], timeout=2.0, what="an endpoint")
    add_addr(n1, f"{A1}/24")  # addresses are the user's business: they went with the tap
    assert pings(cluster.lan, n2, A1)


@pytest.mark.parametrize("unpin", [["umount", "--lazy"], ["ip", "netns", "delete"]],
                         ids=["umount", "ip-netns-delete"])
def test_unpinned_namespace_is_pinned_again(cluster: Cluster, unpin: list[str]) -> None:
    alice, n1, n2 = pair(cluster)
    inside = sleeper(cluster, n1)
    ino = proc_ns_inode(inside.pid)
    assert ns_inode(n1) == ino
    # In our (the machine's) mount namespace, where the daemon pins. --lazy: the
    # daemon holds the namespace open, so a plain umount says "target is busy".
    sh(*unpin, f"/run/netns/{n1}" if unpin[0] == "umount" else n1)
    assert not pinned(n1)
    assert status(cluster, 1, alice)["pinned"] is False

    res = cluster.session(1, "reprovision", alice)
    assert res.returncode == 0, res.stderr
    assert pinned(n1) and ns_inode(n1) == ino, "pinned again: the same namespace"
    assert status(cluster, 1, alice)["pinned"] is True
    assert pings(cluster.lan, n2, A1), "with its tap and address"
    assert sh("ip", "netns", "exec", n1, "ip", "-br", "addr").stdout.count(A1) == 1
    cluster.lan.stop(inside)
