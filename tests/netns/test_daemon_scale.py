"""Many opens at once: 50 users (two gids), each from its own thread and control
connection; 20 opens of one user. Then the daemon tears all of it down."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cluster import Cluster
from lan import wait_for
from provisioned import endpoint_pids, netns_names, ns_inode, port, status

from vxvdex import control

USERS = 50
SAME_USER = 20


def at_once(count: int, request: Callable[[int], str], run_dir: object) -> list[tuple[str, str, int | None]]:
    """count requests released together, one thread and connection each:
    (status, text, inode of the passed fd) per request."""
    start = threading.Barrier(count)

    def one(i: int) -> tuple[str, str, int | None]:
        start.wait()
        answer = control.ask(run_dir, request(i), timeout=120)  # type: ignore[arg-type]
        inode = None
        if answer.fd is not None:
            inode = os.fstat(answer.fd).st_ino
            os.close(answer.fd)
        return answer.status, f"{answer.code} {answer.text}".strip(), inode

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_fifty_users_opened_at_once_then_torn_down(cluster: Cluster) -> None:
    groups = [f"vxa{cluster.tag}", f"vxb{cluster.tag}"]
    gids = [cluster.group(g) for g in groups]
    users = [cluster.user(f"u{i:02d}n", groups[i % 2]) for i in range(USERS)]
    cluster.start(1)
    results = at_once(USERS, lambda i: f"open {users[i]} s1", cluster.run_dir(1))

    assert [r for r in results if r[0] != "ok"] == []
    names = [r[1] for r in results]
    assert names == [cluster.netns_name(1, u) for u in users]
    assert set(names) <= netns_names()
    assert [r[2] for r in results] == [ns_inode(n) for n in names]
    assert len({r[2] for r in results}) == USERS, "50 different namespaces"
    ports = [port(cluster, 1, u) for u in users]
    assert [p["vlan_gid"] for p in ports] == [gids[i % 2] for i in range(USERS)]
    pids = {p["endpoint_pid"] for p in ports}
    assert len(pids) == USERS
    assert endpoint_pids(cluster, 1) == pids, "exactly one endpoint process per user"

    # Tear down: the same daemon, now told to remove namespaces nobody uses;
    # it re-adopts all 50 at start, then every session closes at once.
    cluster.lan.stop(cluster.daemons[1])
    cluster.extra_config = "after_logout: remove\nremove_after: 0\n"
    cluster.start(1)
    assert endpoint_pids(cluster, 1) == pids, "all re-adopted, none restarted"
    closed = at_once(USERS, lambda i: f"close {users[i]} s1", cluster.run_dir(1))
    assert [r for r in closed if r[0] != "ok"] == []
    wait_for(lambda: not (set(names) & netns_names()), timeout=10, what="the namespaces to be removed")
    wait_for(lambda: not endpoint_pids(cluster, 1), timeout=5, what="the endpoints to end")
    assert cluster.ask(1, "list").json() == []
    assert "ERROR" not in cluster.log(1) and "Traceback" not in cluster.log(1), cluster.log(1)[-3000:]


def test_twenty_opens_of_one_user_make_one_namespace(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    alice = cluster.user("alice", group)
    cluster.start(1)
    results = at_once(SAME_USER, lambda i: f"open {alice} s{i}", cluster.run_dir(1))
    name = cluster.netns_name(1, alice)
    assert {(r[0], r[1]) for r in results} == {("ok", name)}
    assert {r[2] for r in results} == {ns_inode(name)}
    assert [n for n in netns_names() if alice in n] == [name]
    st = status(cluster, 1, alice)
    assert st["sessions"] == sorted(f"s{i}" for i in range(SAME_USER))
    assert endpoint_pids(cluster, 1) == {st["ports"][0]["endpoint_pid"]}
    assert cluster.log(1).count("provisioned") == 1
