"""Issue 12: what the daemon finds on the machine wins over what it recorded:
orphan endpoints, empty pin files, broken state.json, users it cannot look
up, namespaces unpinned by hand.

    h1: alice 198.51.100.1  <- one VLAN ->  h2: alice 198.51.100.2
"""

from __future__ import annotations

import json
import threading
import time

from cluster import Cluster
from endpoints import pings
from faults import endpoint_of, kill_daemon, managed_users, read_state, saved_state, state_path
from lan import NETNS_DIR, sh, wait_for
from provisioned import alive, endpoint_pids, ns_inode, ping_once, pinned, port, proc_ns_inode, sleeper
from test_daemon_faults import A1, pair

COLLECT_TICKS = 3 * 2.0 + 0.5   # three collector rounds and a margin


def reopen(c: Cluster, user: str, session: str) -> None:
    answer = c.ask(1, f"open {user} {session}")
    assert answer.status == "ok", (answer, c.log(1)[-2000:])


def test_orphan_endpoint_unknown_to_state_is_adopted(cluster: Cluster) -> None:
    """Item 2: the daemon died before it saved the endpoint's pid (or the namespace at all)."""
    alice, n1, n2 = pair(cluster)
    pid = endpoint_of(cluster, 1, alice)
    ino = ns_inode(n1)
    saved = saved_state(cluster, 1, n1)[n1]
    for state in ({n1: {**saved, "pids": {}}}, {}):
        kill_daemon(cluster, 1)
        state_path(cluster, 1).write_text(json.dumps(state))
        cluster.start(1)
        reopen(cluster, alice, "s2")
        assert ns_inode(n1) == ino
        assert endpoint_pids(cluster, 1) == {pid}, "the orphan adopted, no second endpoint"
        assert port(cluster, 1, alice)["endpoint_pid"] == pid
        assert ping_once(cluster, n2, A1)


def test_daemon_killed_during_concurrent_opens(cluster: Cluster) -> None:
    """Item 2 as it was found: SIGKILL of the daemon while many users log in at
    once; after a restart every user can log in, with one endpoint each."""
    users = managed_users(cluster, 40)
    cluster.start(1)
    threads = [threading.Thread(target=_try_open, args=(cluster, u)) for u in users]
    for t in threads:
        t.start()
    time.sleep(0.1)
    kill_daemon(cluster, 1)
    for t in threads:
        t.join()
    cluster.start(1)
    failed = {}
    for u in users:
        answer = cluster.ask(1, f"open {u} s2")
        if answer.status != "ok":
            failed[u] = f"{answer.code} {answer.text}"
    assert failed == {}, (failed, cluster.log(1)[-3000:])
    wait_for(lambda: len(endpoint_pids(cluster, 1)) == len(users), timeout=5,
             what="exactly one endpoint per user")
    assert all(pinned(cluster.netns_name(1, u)) for u in users)


def _try_open(c: Cluster, user: str) -> None:
    try:
        c.ask(1, f"open {user} s1")
    except (OSError, ValueError):
        pass  # the daemon was killed under it


def test_empty_pin_file_left_by_a_crash(cluster: Cluster) -> None:
    """Item 2: a crash between creating /run/netns/NAME and the bind mount
    leaves an empty file: it neither blocks the next open nor a restart."""
    _alice, _n1, n2 = pair(cluster)
    bob, carol = cluster.user("bob", f"vxa{cluster.tag}"), cluster.user("carol", f"vxa{cluster.tag}")
    names = [cluster.netns_name(1, u) for u in (bob, carol)]
    try:
        (NETNS_DIR / names[0]).touch(0o444)
        reopen(cluster, bob, "s1")
        assert pinned(names[0])
        kill_daemon(cluster, 1)
        (NETNS_DIR / names[1]).touch(0o444)
        cluster.start(1)
        assert not (NETNS_DIR / names[1]).exists(), "removed at start"
        reopen(cluster, carol, "s1")
        assert pinned(names[1]) and ping_once(cluster, n2, A1)
    finally:
        for name in names:
            if not pinned(name):
                (NETNS_DIR / name).unlink(missing_ok=True)


def test_broken_state_file_is_survived(cluster: Cluster) -> None:
    """Item 9: empty, truncated, null or [] state.json: same namespace, same endpoint."""
    alice, n1, n2 = pair(cluster)
    pid = endpoint_of(cluster, 1, alice)
    ino = ns_inode(n1)
    good = json.dumps(saved_state(cluster, 1, n1))
    for i, broken in enumerate(["", good[: len(good) // 2], "null", "[]"]):
        kill_daemon(cluster, 1)
        state_path(cluster, 1).write_text(broken)
        cluster.start(1)
        reopen(cluster, alice, f"s{i + 2}")
        assert ns_inode(n1) == ino and endpoint_pids(cluster, 1) == {pid}, (broken, cluster.log(1)[-2000:])
        assert ping_once(cluster, n2, A1)
    assert not list(cluster.run_dir(1).glob("*.tmp")), "state is written through a temporary file"


def test_unresolvable_user_is_kept(cluster: Cluster) -> None:
    """Item 8: a user who cannot be looked up at start keeps namespace and endpoint."""
    alice, n1, n2 = pair(cluster)
    pid = endpoint_of(cluster, 1, alice)
    ino = ns_inode(n1)
    hidden = f"gone{cluster.tag}"
    kill_daemon(cluster, 1)
    sh("usermod", "--login", hidden, alice)  # alice cannot be looked up; her uid stays taken
    try:
        cluster.start(1)
        assert n1 in read_state(cluster, 1), "kept in state.json"
        assert alive(pid)
    finally:
        sh("usermod", "--login", alice, hidden)
    reopen(cluster, alice, "s2")
    assert ns_inode(n1) == ino
    assert port(cluster, 1, alice)["endpoint_pid"] == pid and endpoint_pids(cluster, 1) == {pid}
    assert ping_once(cluster, n2, A1)
    assert "kept" in cluster.log(1)


def test_namespace_unpinned_under_a_logged_in_user_is_pinned_again(cluster: Cluster) -> None:
    """Item 7: with after_logout: remove, `ip netns delete` while a process of
    the user runs inside: the collector pins it again and removes nothing."""
    cluster.extra_config = "after_logout: remove\nremove_after: 1\n"
    alice, n1, n2 = pair(cluster)
    pid = endpoint_of(cluster, 1, alice)
    inside, far = sleeper(cluster, n1), sleeper(cluster, n2)  # both logged in
    ino = proc_ns_inode(inside.pid)
    sh("ip", "netns", "delete", n1)
    time.sleep(COLLECT_TICKS)
    wait_for(lambda: pinned(n1), timeout=3, what="the namespace pinned again")
    assert ns_inode(n1) == ino
    assert alive(pid) and port(cluster, 1, alice)["endpoint_pid"] == pid
    assert pings(cluster.lan, n2, A1)
    cluster.lan.stop(inside)
    cluster.lan.stop(far)


def test_namespace_unpinned_while_the_daemon_is_down_is_pinned_again(cluster: Cluster) -> None:
    """The pin is gone when the daemon starts (`ip netns delete` while it was
    down): the endpoint still holds the namespace, so the daemon pins it
    again under its name and adopts that endpoint. Left alone, the orphan
    kept forwarding alice's MAC on the VLAN next to the endpoint of the new
    namespace her next login got."""
    alice, n1, n2 = pair(cluster)
    pid = endpoint_of(cluster, 1, alice)
    ino = ns_inode(n1)
    kill_daemon(cluster, 1)
    sh("ip", "netns", "delete", n1)
    assert not pinned(n1)
    cluster.start(1)
    reopen(cluster, alice, "s2")
    assert ns_inode(n1) == ino, "the same namespace, pinned again"
    assert endpoint_pids(cluster, 1) == {pid}, "the orphan adopted, no second endpoint"
    assert ping_once(cluster, n2, A1)
