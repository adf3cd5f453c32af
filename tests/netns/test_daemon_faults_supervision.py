"""Issue 12: endpoints that die, hang, lose their group or their zygote, or
cannot write their status file; pids that are not what they seem.

    h1: alice 198.51.100.1  <- one VLAN ->  h2: alice 198.51.100.2
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from cluster import ENDPOINT_USER, Cluster
from faults import (
    FREEZER,
    endpoint_of,
    flush_neighbours,
    frozen,
    gone,
    kill_daemon,
    managed_users,
    recreate_uplink,
    saved_state,
    state_path,
    stop_process,
    zygote_pid,
)
from lan import sh, wait_for
from provisioned import alive, endpoint_pids, ping_once, port
from test_daemon_faults import A1, pair

HUNG_NOTICED = 22.0   # the daemon's heartbeat limit, a collector round and a margin


def test_open_right_after_an_endpoint_died_never_locks_out(cluster: Cluster) -> None:
    """Item 1: the exit of an endpoint already replaced by an open must not
    drop the replacement (and then fail on the tap it still holds)."""
    users = managed_users(cluster, 30)
    cluster.start(1)
    for u in users:
        cluster.open(1, u)
    pids = {u: endpoint_of(cluster, 1, u) for u in users}
    answers: dict[str, list[str]] = {u: [] for u in users}
    start = threading.Barrier(len(users))

    def relogin(user: str) -> None:
        start.wait()
        os.kill(pids[user], signal.SIGKILL)
        while alive(pids[user]):  # log in again the moment it is gone: before the daemon's notice
            pass
        for session, pause in (("s2", 0.0), ("s3", 0.5)):
            time.sleep(pause)
            a = cluster.ask(1, f"open {user} {session}")
            answers[user].append(f"{a.status} {a.code} {a.text}")

    threads = [threading.Thread(target=relogin, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = {u: a for u, a in answers.items() if any(not x.startswith("ok") for x in a)}
    assert failed == {}, cluster.log(1)[-3000:]
    for u in users:
        p = port(cluster, 1, u)
        assert p["endpoint_alive"] and p["endpoint_pid"] != pids[u], (u, p)
    assert len(endpoint_pids(cluster, 1)) == len(users), "one endpoint per user, no stray ones"


def test_dead_zygote_is_replaced(cluster: Cluster) -> None:
    """Item 3: new users and restarts work after the zygote was killed."""
    alice, _n1, n2 = pair(cluster)
    bob = cluster.user("bob", f"vxa{cluster.tag}")
    os.kill(zygote_pid(cluster, 1), signal.SIGKILL)
    answer = cluster.ask(1, f"open {bob} s1")
    assert answer.status == "ok", (answer, cluster.log(1)[-2000:])
    pid = endpoint_of(cluster, 1, alice)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: port(cluster, 1, alice)["restarts"] == 1 and port(cluster, 1, alice)["endpoint_alive"],
             timeout=3, what="the endpoint to be restarted")
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.2), timeout=3, what="traffic to resume")
    zygote_pid(cluster, 1)  # exactly one again


def test_full_run_directory_does_not_stop_forwarding(cluster: Cluster) -> None:
    """Item 4: status files cannot be written (ENOSPC): traffic, endpoints and new opens go on."""
    rd = cluster.run_dir(1)
    rd.mkdir(parents=True)
    sh("mount", "-t", "tmpfs", "-o", "size=512k,mode=755", "tmpfs", str(rd))
    try:
        alice, _n1, n2 = pair(cluster)
        pid = endpoint_of(cluster, 1, alice)
        fd = os.open(rd / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        res = cluster.lan.run(n2, "ping", "-c", "30", "-i", "0.05", "-W", "1", "-q", A1, check=False)
        assert " 0% packet loss" in res.stdout, res.stdout
        p = port(cluster, 1, alice)
        assert (p["endpoint_pid"], p["restarts"], p["endpoint_alive"]) == (pid, 0, True), \
            cluster.log(1)[-2000:]
        bob = cluster.user("bob", f"vxa{cluster.tag}")
        answer = cluster.ask(1, f"open {bob} s1")
        assert answer.status == "ok", (answer, cluster.log(1)[-2000:])
    finally:
        for proc in cluster.daemons.values():
            cluster.lan.stop(proc)
        sh("umount", "--lazy", str(rd), check=False)


def test_hung_endpoint_is_replaced(cluster: Cluster) -> None:
    """Item 5: a stopped endpoint: reprovision makes it work, and so does the
    daemon by itself within its heartbeat limit."""
    alice, _n1, n2 = pair(cluster)
    first = endpoint_of(cluster, 1, alice)
    stop_process(first)
    assert not ping_once(cluster, n2, A1, wait=0.3)
    res = cluster.session(1, "reprovision", alice)
    assert res.returncode == 0, res.stderr
    second = endpoint_of(cluster, 1, alice)
    assert second != first and gone(first)
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.2), timeout=3, what="traffic after reprovision")

    stop_process(second)
    wait_for(lambda: gone(second), timeout=HUNG_NOTICED, what="the hung endpoint to be ended")
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.2), timeout=3,
             what="traffic after the heartbeat check")
    assert port(cluster, 1, alice)["restarts"] == 2


@pytest.mark.skipif(FREEZER is None, reason="needs cgroup v2 (its freezer)")
def test_frozen_endpoint_is_replaced_for_want_of_a_heartbeat(cluster: Cluster) -> None:
    """Item 5: a hang the process state does not show (frozen): the heartbeat does."""
    alice, _n1, n2 = pair(cluster)
    first = endpoint_of(cluster, 1, alice)
    with frozen(first, cluster.tag):
        assert not ping_once(cluster, n2, A1, wait=0.3)
        wait_for(lambda: port(cluster, 1, alice)["endpoint_pid"] != first, timeout=HUNG_NOTICED,
                 what="the silent endpoint to be replaced")
    wait_for(lambda: gone(first), timeout=5, what="the frozen endpoint to end")
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.2), timeout=3,
             what="traffic after the heartbeat check")
    assert port(cluster, 1, alice)["restarts"] == 1


def test_group_rejoined_after_the_uplink_is_recreated(cluster: Cluster) -> None:
    """Item 6: the host's uplink deleted and made again: endpoints join the group again."""
    alice, n1, n2 = pair(cluster)
    pid = endpoint_of(cluster, 1, alice)
    recreate_uplink(cluster, 1)
    flush_neighbours(n1, n2, cluster.lan.host(1), cluster.lan.host(2))
    # the ARP request for A1 reaches h1 only through the group
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.3), timeout=6, what="traffic over the new uplink")
    assert port(cluster, 1, alice)["endpoint_pid"] == pid, "rejoined, not restarted"


def test_reused_pid_is_not_adopted(cluster: Cluster) -> None:
    """Issue 11: state.json names the pid of a foreign process of the endpoint
    user (as after pid reuse): it is neither adopted nor ended."""
    alice, n1, n2 = pair(cluster)
    pid = endpoint_of(cluster, 1, alice)
    state = saved_state(cluster, 1, n1)
    kill_daemon(cluster, 1)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), what="the endpoint to end")
    foreign = cluster.lan.spawn(cluster.lan.host(1), "setpriv", f"--reuid={ENDPOINT_USER}",
                                f"--regid={ENDPOINT_USER}", "--clear-groups", "sleep", "600",
                                host_mounts=True)
    wait_for(lambda: (os.stat(f"/proc/{foreign.pid}").st_uid != 0), what="the foreign process to drop root")
    for saved in state.values():
        saved["pids"] = {"vde0": foreign.pid}
    state_path(cluster, 1).write_text(json.dumps(state))
    cluster.start(1)
    new = endpoint_of(cluster, 1, alice)
    assert new != foreign.pid
    assert alive(foreign.pid) and foreign.poll() is None, "a foreign process is left alone"
    wait_for(lambda: ping_once(cluster, n2, A1, wait=0.2), timeout=3, what="traffic")
    cluster.lan.stop(foreign)
    assert isinstance(foreign, subprocess.Popen)
