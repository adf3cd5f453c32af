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

import pytest
from cluster import Cluster
from lan import sh
from provisioned import ASK, ask_as, ns_inode
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
