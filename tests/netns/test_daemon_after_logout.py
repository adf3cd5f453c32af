"""after_logout: `remove` takes a namespace away once its sessions are closed
and no process is left in it (the collector runs every 2 s, then waits
remove_after seconds); `keep` leaves it."""

from __future__ import annotations

import os
import threading
import time

from cluster import Cluster
from lan import wait_for
from provisioned import alive, endpoint_pids, link, netns_names, pinned, port, sleeper

from vxvdex import control

COLLECT_TICKS = 2 * 2.0 + 0.5   # two collector rounds and a margin


def managed_user(c: Cluster) -> str:
    group = f"vxa{c.tag}"
    c.group(group)
    return c.user("alice", group)


def test_remove_after_logout_once_nothing_runs_inside(cluster: Cluster) -> None:
    alice = managed_user(cluster)
    cluster.extra_config = "after_logout: remove\nremove_after: 1\n"
    cluster.start(1)
    name = cluster.open(1, alice)
    mac = link(name, "vde0")["address"]  # type: ignore[index]
    pid = port(cluster, 1, alice)["endpoint_pid"]
    inside = sleeper(cluster, name)
    assert cluster.ask(1, f"close {alice} s1").status == "ok"
    time.sleep(COLLECT_TICKS)
    assert pinned(name) and alive(pid), "a process is still inside: kept"

    cluster.lan.stop(inside)
    emptied = time.monotonic()
    wait_for(lambda: name not in netns_names(), timeout=6, what=f"{name} to be removed")
    took = time.monotonic() - emptied
    assert 1.0 <= took <= 5.0, took
    wait_for(lambda: not alive(pid), timeout=3, what="its endpoint to end")
    assert endpoint_pids(cluster, 1) == set()
    assert cluster.ask(1, f"status {alice}").code == "ENOENT"
    assert cluster.session(1, "status", alice).returncode == 6

    # logging in again: a new namespace (inode numbers are reused: not compared), the same MAC
    assert cluster.open(1, alice) == name
    assert link(name, "vde0")["address"] == mac  # type: ignore[index]


def test_keep_after_logout(cluster: Cluster) -> None:
    alice = managed_user(cluster)
    cluster.extra_config = "after_logout: keep\nremove_after: 0\n"
    cluster.start(1)
    name = cluster.open(1, alice)
    pid = port(cluster, 1, alice)["endpoint_pid"]
    assert cluster.ask(1, f"close {alice} s1").status == "ok"
    time.sleep(COLLECT_TICKS)
    assert name in netns_names() and pinned(name)
    assert port(cluster, 1, alice)["endpoint_pid"] == pid and alive(pid)


def test_opens_racing_the_collector_never_leak(cluster: Cluster) -> None:
    """With remove_after: 0 the collector removes the namespace between opens:
    an open waiting for it must not bring the removed one back to life."""
    alice = managed_user(cluster)
    cluster.extra_config = "after_logout: remove\nremove_after: 0\n"
    cluster.start(1)
    name = cluster.netns_name(1, alice)
    failures: list[control.Answer] = []
    until = time.monotonic() + 2 * 2.0 + 0.5

    def opener() -> None:
        while time.monotonic() < until:
            answer = control.ask(cluster.run_dir(1), f"open {alice} s1")
            if answer.fd is not None:
                os.close(answer.fd)
            if answer.status != "ok" or answer.text != name:
                failures.append(answer)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert cluster.log(1).count("removed ") >= 1, "the collector did run in between"
    # nothing is inside: it goes, and with it every endpoint ever started for it
    wait_for(lambda: name not in netns_names(), timeout=6, what=f"{name} to be removed")
    wait_for(lambda: not endpoint_pids(cluster, 1), timeout=3, what="no endpoint left")
    assert cluster.ask(1, f"status {alice}").code == "ENOENT"
