"""Sessions are the daemon's to count and to name (issue 11 items 6 and 7).

With `scope: session` every login gets a namespace of its own. Names used to
be `{user}-{session}` with a session string the caller chose, so user
"al<tag>" asking for session "x-ssh-4242" got the namespace of user
"al<tag>-x", session "ssh-4242". Now names cannot collide, an entry is only
ever handed to its owner, only root (pam_vxvdex) starts sessions, a user may
only rejoin one of their own, and a user has at most max_sessions.

    h1: vxvdexd, scope: session, max_sessions: 3
        al<tag> and al<tag>-x (managed), root's sessions as pam_vxvdex opens them
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cluster import Cluster
from lan import sh
from provisioned import ASK, ask_as, is_up, link, ns_inode, pinned
from runtrace import running_cluster

MAX = 3


class World:
    def __init__(self, c: Cluster) -> None:
        self.c = c
        group = f"vxs{c.tag}"
        c.group(group)
        self.alice = c.user("al", group)
        self.alice_x = f"{self.alice}-x"   # a name that is alice's plus "-x"
        sh("useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/bash",
           "-g", group, "-G", c.managed, self.alice_x)
        c.made_users.append(self.alice_x)
        c.start(1)

    def ask_root_from_a_process_that_ends(self, request: str) -> str:
        """As pam_vxvdex in an sshd session process that has ended since."""
        res = subprocess.run([sys.executable, ASK, str(self.c.run_dir(1) / "control"), request],
                             capture_output=True, text=True, check=True, timeout=30)
        answer: str = json.loads(res.stdout)["answer"]
        return answer

    def sessions(self, user: str) -> list[str]:
        answer = self.c.ask(1, f"status {user}")
        assert answer.status == "ok", answer
        data = answer.json()
        entries = data if isinstance(data, list) else [data]
        return sorted(s for e in entries for s in e["sessions"])  # type: ignore[index]


@pytest.fixture
def world() -> Iterator[World]:
    with running_cluster(hosts=1, config=f"scope: session\nmax_sessions: {MAX}\n") as c:
        yield World(c)


def test_a_user_cannot_reach_another_users_namespace_by_name(world: World) -> None:
    c = world.c
    victim_ns = c.open(1, world.alice_x, "ssh-4242")
    victim = ns_inode(victim_ns)
    # The attack: alice names a session whose name used to collide.
    got = ask_as(world.alice, c.run_dir(1), f"open {world.alice} x-ssh-4242")
    assert got["fd_inode"] != victim, got
    assert got["answer"].startswith("error EPERM "), got
    # Even a session root opens with that string is a namespace of alice's own.
    mine = c.open(1, world.alice, "x-ssh-4242")
    assert mine != victim_ns and ns_inode(mine) != victim
    assert world.sessions(world.alice_x) == ["ssh-4242"]
    assert world.sessions(world.alice) == ["x-ssh-4242"]


def test_only_root_starts_sessions_a_user_rejoins_her_own(world: World) -> None:
    c = world.c
    ns = c.open(1, world.alice, "pts.1-100")
    for invented in ("pts.1-101", "random1", "-"):
        got = ask_as(world.alice, c.run_dir(1), f"open {world.alice} {invented}")
        assert got["answer"].startswith("error EPERM ") and got["fd_inode"] is None, got
    assert ask_as(world.alice, c.run_dir(1), f"open {world.alice}")["answer"].startswith("error ")
    got = ask_as(world.alice, c.run_dir(1), f"open {world.alice} pts.1-100")
    assert got == {"answer": f"ok {ns}", "fd_inode": ns_inode(ns)}
    assert world.sessions(world.alice) == ["pts.1-100"]


def test_sessions_per_user_are_capped(world: World) -> None:
    c = world.c
    for i in range(MAX):
        c.open(1, world.alice, f"s{i}")
    answer = c.ask(1, f"open {world.alice} s{MAX}")
    assert (answer.status, answer.code) == ("error", "EUSERS"), answer
    assert answer.fd is None and len(world.sessions(world.alice)) == MAX
    assert c.open(1, world.alice_x, "s0")  # other users are not affected
    # A session whose opener is gone (sshd killed before close) no longer counts at the cap.
    c.ask(1, f"close {world.alice} s0")
    assert world.ask_root_from_a_process_that_ends(f"open {world.alice} gone1").startswith("ok ")
    assert c.ask(1, f"open {world.alice} s{MAX}").status == "ok"
    assert world.sessions(world.alice) == sorted(["s1", "s2", f"s{MAX}"])


def test_concurrent_new_sessions_do_not_pass_the_cap(world: World) -> None:
    """Logins that arrive together are counted before their namespaces exist."""
    c = world.c
    with ThreadPoolExecutor(max_workers=4 * MAX) as pool:
        answers = list(pool.map(lambda i: c.ask(1, f"open {world.alice} burst{i}"), range(4 * MAX)))
    opened = [a for a in answers if a.status == "ok"]
    refused = [a for a in answers if (a.status, a.code) == ("error", "EUSERS")]
    assert len(opened) == MAX and len(refused) == 3 * MAX, [(a.status, a.code, a.text) for a in answers]
    assert len(world.sessions(world.alice)) == MAX


def cli(c: Cluster, *args: str) -> subprocess.CompletedProcess:
    return c.session(1, *args)


def test_every_command_works_in_session_scope(world: World) -> None:
    """Name the session, or act on all of the user's (issue 15 item 4)."""
    c, alice = world.c, world.alice
    ns = {s: c.open(1, alice, s) for s in ("s1", "s2")}
    res = cli(c, "--json", "status", alice)
    assert res.returncode == 0, res.stderr
    assert sorted(e["netns"] for e in json.loads(res.stdout)) == sorted(ns.values())
    res = cli(c, "--json", "status", alice, "s2")
    assert res.returncode == 0 and json.loads(res.stdout)["netns"] == ns["s2"], res.stderr
    assert cli(c, "down", alice).returncode == 0
    assert not any(is_up(n, "vde0") for n in ns.values())
    assert cli(c, "up", alice, "s1").returncode == 0
    assert is_up(ns["s1"], "vde0") and not is_up(ns["s2"], "vde0")
    assert cli(c, "up", alice).returncode == 0 and cli(c, "reprovision", alice).returncode == 0
    assert cli(c, "reprovision", alice, "s2").returncode == 0
    res = cli(c, "exec", alice, "s2", "--", "readlink", "/proc/self/ns/net")
    assert res.returncode == 0 and res.stdout.strip() == f"net:[{ns_inode(ns['s2'])}]", res.stderr
    res = cli(c, "exec", alice, "--", "true")
    assert res.returncode == 2 and "name the session" in res.stderr and "s1" in res.stderr
    assert cli(c, "status", alice, "s9").returncode == 6


def test_keep_means_until_the_users_last_session(world: World) -> None:
    c, alice = world.c, world.alice
    ns = {s: c.open(1, alice, s) for s in ("s1", "s2")}
    other = c.open(1, world.alice_x, "s1")
    assert c.ask(1, f"close {alice} s1").status == "ok"
    assert all(pinned(n) for n in ns.values())       # s2 is still open: s1's namespace stays
    assert c.ask(1, f"close {alice} s2").status == "ok"
    assert not any(pinned(n) for n in ns.values())   # her last session: all of hers go
    assert pinned(other)                             # nobody else's
    assert c.ask(1, f"status {alice}").code == "ENOENT"


def test_two_sessions_of_a_user_have_different_macs(world: World) -> None:
    """Both are on her VLAN at once: one MAC for both would make them fight over it."""
    c, alice = world.c, world.alice
    for s in ("s1", "s2"):
        c.open(1, alice, s)
    macs = [c.ask(1, f"status {alice} {s}").json()["ports"][0]["mac"] for s in ("s1", "s2")]  # type: ignore[index]
    links = [link(c.open(1, alice, s), "vde0") for s in ("s1", "s2")]
    assert [x["address"] for x in links if x] == macs
    assert macs[0] != macs[1], macs
