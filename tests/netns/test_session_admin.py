"""vxvdex-session's administrator commands on a simulated LAN: remove (with
and without processes in the namespace), reprovision after a change of a
user's primary gid across a daemon restart and after an upgrade (status
tells the truth, then reprovision --all fixes it), who MAC|ADDRESS, and the exit codes of a
user without a namespace (6) and of no such user (7)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from cluster import Cluster
from endpoints import pings
from lan import REPO, sh, wait_for
from provisioned import add_addr, alive, pinned, port, sleeper, status


def test_remove_refuses_while_processes_are_inside_unless_forced(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    alice = cluster.user("alice", group)
    cluster.start(1)
    ns = cluster.open(1, alice)
    pid = port(cluster, 1, alice)["endpoint_pid"]
    inside = sleeper(cluster, ns)

    refused = cluster.session(1, "remove", alice)
    assert refused.returncode == 1 and "1 processes" in refused.stderr and "--force" in refused.stderr
    assert pinned(ns) and alive(pid)
    denied = sh("setpriv", f"--reuid={alice}", "--regid=nogroup", "--clear-groups",
                *cluster.session_cmd(1, "remove", alice), check=False)
    assert denied.returncode == 5, denied.stderr

    forced = cluster.session(1, "remove", alice, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "1 processes stay" in forced.stdout
    assert not pinned(ns)
    wait_for(lambda: not alive(pid), what="the endpoint to end")
    assert cluster.session(1, "status", alice).returncode == 6
    cluster.lan.stop(inside)

    cluster.open(1, alice)  # the next login provisions afresh
    assert port(cluster, 1, alice)["endpoint_alive"]
    assert cluster.session(1, "remove", alice).returncode == 0  # nobody inside: no --force needed

    bob = cluster.user("bob", group)
    pids = [cluster.open(1, u) and port(cluster, 1, u)["endpoint_pid"] for u in (alice, bob)]
    everyone = cluster.session(1, "remove", "--all")
    assert everyone.returncode == 0 and everyone.stdout.count("removed the namespace") == 2
    assert cluster.ask(1, "list").json() == []
    wait_for(lambda: not any(alive(pid) for pid in pids), what="every endpoint to end")


def test_a_changed_primary_gid_shows_as_stale_and_reprovision_all_applies_it(cluster: Cluster) -> None:
    ga, gb = f"vxa{cluster.tag}", f"vxb{cluster.tag}"
    gid_a, gid_b = cluster.group(ga), cluster.group(gb)
    alice, bob, carol = cluster.user("alice", ga), cluster.user("bob", ga), cluster.user("carol", gb)
    cluster.start(1)
    cluster.start(2)
    ns_alice, ns_bob, ns_carol = cluster.open(1, alice), cluster.open(2, bob), cluster.open(2, carol)
    add_addr(ns_alice, "198.51.100.1/24")
    add_addr(ns_bob, "198.51.100.2/24")
    add_addr(ns_carol, "198.51.100.3/24")
    assert pings(cluster.lan, ns_alice, "198.51.100.2")

    sh("usermod", "-g", gb, alice)
    cluster.lan.stop(cluster.daemons[1])
    cluster.start(1)  # re-adopts alice's endpoint, which still serves A
    p = port(cluster, 1, alice)
    assert p["vlan_gid"] == gid_b and p["endpoint"]["vlan_gid"] == gid_a
    assert p["stale"] and f"vlan_gid {gid_a}" in p["stale"]
    assert "STALE" in cluster.session(1, "status", alice).stdout

    done = cluster.session(1, "reprovision", "--all")
    assert done.returncode == 0 and f"{alice}: done" in done.stdout, done.stderr
    p = port(cluster, 1, alice)
    assert p["endpoint"]["vlan_gid"] == gid_b and p["stale"] is None and p["endpoint_alive"]
    assert status(cluster, 1, alice)["gid"] == gid_b
    assert pings(cluster.lan, ns_alice, "198.51.100.3"), "alice is on B's VLAN now"
    assert not pings(cluster.lan, ns_alice, "198.51.100.2", count=1, timeout=1), "and no longer on A's"


def test_who_finds_the_user_of_a_mac_or_an_address(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    alice, bob = cluster.user("alice", group), cluster.user("bob", group)
    cluster.start(1)
    cluster.start(2)
    ns_alice, ns_bob = cluster.open(1, alice), cluster.open(2, bob)
    add_addr(ns_alice, "198.51.100.1/24")
    add_addr(ns_bob, "198.51.100.2/24")
    assert pings(cluster.lan, ns_alice, "198.51.100.2")
    mac_alice, mac_bob = port(cluster, 1, alice)["mac"], port(cluster, 2, bob)["mac"]

    mine = cluster.session(1, "who", mac_alice.upper().replace(":", "-"))
    assert mine.returncode == 0 and f"is {alice}'s vde0 on this host" in mine.stdout, mine.stderr
    # endpoints publish what they learned at their next status tick
    wait_for(lambda: mac_bob in [p["mac"] for p in port(cluster, 1, alice)["endpoint"].get("peers", [])],
             timeout=15, what="alice's endpoint to publish bob's MAC")
    remote = cluster.session(1, "who", mac_bob)
    assert remote.returncode == 0 and f"on host {cluster.lan.addr4(2)}" in remote.stdout, remote.stdout
    there = cluster.session(2, "who", mac_bob)
    assert f"is {bob}'s vde0 on this host" in there.stdout
    by_addr = cluster.session(1, "who", "198.51.100.1")
    assert by_addr.returncode == 0 and f"{alice}'s vde0" in by_addr.stdout
    via_neigh = cluster.session(1, "who", "198.51.100.2")
    assert via_neigh.returncode == 0 and f"on host {cluster.lan.addr4(2)}" in via_neigh.stdout
    assert cluster.session(1, "who", "198.51.100.77").returncode == 6
    assert cluster.session(1, "who", "nonsense").returncode == 2


def test_no_namespace_and_no_such_user_differ(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    alice = cluster.user("alice", group)
    cluster.start(1)
    none_yet = cluster.session(1, "status", alice)
    assert none_yet.returncode == 6 and "log in first" in none_yet.stderr
    nobody = cluster.session(1, "status", f"nosuch{cluster.tag}")
    assert nobody.returncode == 7 and "no such user" in nobody.stderr
    assert cluster.session(1, "remove", f"nosuch{cluster.tag}").returncode == 7


def test_after_an_upgrade_reprovision_all_restarts_endpoints_of_the_old_code(cluster: Cluster,
                                                                             tmp_path: Path) -> None:
    """The endpoints of an older vxvdex, re-adopted by the new daemon, are
    shown as stale and restarted (with the new code) by reprovision --all."""
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    alice = cluster.user("alice", group)
    old = tmp_path / "old"
    shutil.copytree(REPO / "vxvdex", old / "vxvdex")
    init = old / "vxvdex" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', '__version__ = "0.0.1"', init.read_text()))
    cfg = cluster.dir / "h1-old.yaml"
    cfg.write_text(cluster.config_text(1))
    cluster.run_dir(1).mkdir(parents=True, exist_ok=True)
    # From / (python -m puts the current directory first): the old copy, for the zygote too.
    old_daemon = ["env", "--chdir=/", f"PYTHONPATH={old}", sys.executable, "-m", "vxvdex.daemon.vxvdexd"]
    cluster.daemons[1] = cluster.lan.spawn(cluster.lan.host(1), *old_daemon, "--config", str(cfg),
                                           log=cluster.dir / "vxvdexd-h1-old.log", host_mounts=True)
    wait_for(lambda: cluster.daemons[1].poll() is not None or (cluster.run_dir(1) / "control").exists(),
             timeout=15, what="the old daemon")
    assert cluster.daemons[1].poll() is None, cluster.log(1)
    assert cluster.ask(1, "version").text == "0.0.1"
    cluster.open(1, alice)
    old_pid = port(cluster, 1, alice)["endpoint_pid"]

    cluster.lan.stop(cluster.daemons[1])
    cluster.start(1)  # the new version re-adopts the old endpoint
    p = port(cluster, 1, alice)
    assert p["endpoint_pid"] == old_pid and "version '0.0.1'" in (p["stale"] or "")
    done = cluster.session(1, "reprovision", "--all")
    assert done.returncode == 0, done.stderr
    p = port(cluster, 1, alice)
    assert p["endpoint_pid"] != old_pid and p["stale"] is None and p["endpoint_alive"]
    assert not alive(old_pid)
