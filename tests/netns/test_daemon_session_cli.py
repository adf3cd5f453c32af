"""vxvdex-session: its documented exit codes (0 ok, 2 usage, 3 no daemon,
4 unmanaged, 5 denied, 6 no namespace yet), --json, exec, down/up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster
from endpoints import pings
from lan import tool
from provisioned import add_addr, as_user, is_up, link, ping_once, port, two_daemons_with_users
from runtrace import running_cluster

A1, A2 = "198.51.100.1", "198.51.100.2"


class World:
    def __init__(self, c: Cluster) -> None:
        self.c = c
        # carl: managed, never logged in
        (self.alice, self.bob, self.carl), self.dave = two_daemons_with_users(c, "alice", "bob", "carl")
        self.n1, self.n2 = c.open(1, self.alice), c.open(2, self.alice)
        add_addr(self.n1, f"{A1}/24")
        add_addr(self.n2, f"{A2}/24")
        c.open(1, self.bob)

    def session(self, *args: str):  # type: ignore[no-untyped-def]
        return self.c.session(1, *args)

    def session_as(self, user: str, *args: str):  # type: ignore[no-untyped-def]
        return as_user(user, tool("vxvdex-session"), "--run-dir", str(self.c.run_dir(1)), *args)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cluster(hosts=2) as c:
        yield World(c)


def test_exit_3_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    for args in (["status"], ["status", "root"], ["list"], ["reprovision", "root"], ["down", "root"]):
        res = subprocess.run([tool("vxvdex-session"), "--run-dir", str(tmp_path), *args],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 3, (args, res.stderr)
        assert "not running" in res.stderr and res.stderr.count("\n") == 1


# (arguments, with {alice} etc.; exit status; words of stderr) as root
AS_ROOT = [
    (["status", "{alice}"], 0, ""),
    (["status", "{dave}"], 4, "not managed"),
    (["status", "root"], 4, "not managed"),
    (["reprovision", "{dave}"], 4, "not managed"),
    (["down", "{dave}"], 4, "not managed"),
    (["status", "{carl}"], 6, "no namespace"),
    (["reprovision", "{carl}"], 6, "no namespace"),
    (["up", "{carl}"], 6, "no namespace"),
    (["exec", "{carl}", "--", "true"], 6, "no namespace"),
    (["exec", "{dave}", "--", "true"], 4, ""),
    (["status", "{alice}", "s1", "{bob}"], 2, "at most two"),
    (["status", "{alice}", "s9"], 6, "no session s9"),
    (["list", "{alice}"], 2, ""),
    (["exec", "{alice}", "true"], 2, "usage"),
    (["frobnicate"], 2, ""),
]


@pytest.mark.parametrize(("args", "code", "words"), AS_ROOT, ids=[" ".join(a[0]) for a in AS_ROOT])
def test_exit_status_as_root(world: World, args: list[str], code: int, words: str) -> None:
    res = world.session(*(a.format(alice=world.alice, bob=world.bob, carl=world.carl, dave=world.dave)
                          for a in args))
    assert res.returncode == code, (res.stdout, res.stderr)
    assert words in res.stderr


# as alice, not root
AS_ALICE = [
    (["status"], 0),
    (["status", "{alice}"], 0),
    (["status", "{bob}"], 5),
    (["list"], 5),
    (["reprovision", "{bob}"], 5),
    (["down", "{bob}"], 5),
    (["exec", "{alice}", "--", "true"], 5),
    (["exec", "{bob}", "--", "true"], 5),
]


@pytest.mark.parametrize(("args", "code"), AS_ALICE, ids=[" ".join(a[0]) for a in AS_ALICE])
def test_exit_status_as_a_user(world: World, args: list[str], code: int) -> None:
    res = world.session_as(world.alice, *(a.format(alice=world.alice, bob=world.bob) for a in args))
    assert res.returncode == code, (res.stdout, res.stderr)
    if code == 5:
        assert res.stdout == "" and res.stderr.startswith("vxvdex-session: ")
    assert is_up(world.c.netns_name(1, world.bob), "vde0")


def test_json_output(world: World) -> None:
    res = world.session("--json", "status", world.alice)
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert (st["user"], st["netns"]) == (world.alice, world.n1)
    assert st["ports"][0]["mac"] == link(world.n1, "vde0")["address"]  # type: ignore[index]
    res = world.session("--json", "list")
    assert res.returncode == 0, res.stderr
    assert {s["user"] for s in json.loads(res.stdout)} == {world.alice, world.bob}
    mine = world.session_as(world.alice, "--json", "status")
    assert mine.returncode == 0 and json.loads(mine.stdout)["user"] == world.alice
    text = world.session("status", world.alice)
    assert text.returncode == 0 and world.n1 in text.stdout and "vde0" in text.stdout


def test_exec_runs_inside_the_users_namespace(world: World) -> None:
    res = world.session("exec", world.alice, "--", "ip", "-br", "link")
    assert res.returncode == 0, res.stderr
    vde0 = [line.split() for line in res.stdout.splitlines() if line.startswith("vde0")]
    assert len(vde0) == 1 and vde0[0][2] == port(world.c, 1, world.alice)["mac"], res.stdout
    assert "eth0" not in res.stdout, "not the host's namespace"
    res = world.session("exec", world.alice, "--", sys.executable, "-c", "print('inside')")
    assert (res.returncode, res.stdout) == (0, "inside\n")


def test_down_and_up(world: World) -> None:
    assert pings(world.c.lan, world.n2, A1)
    pid = port(world.c, 1, world.alice)["endpoint_pid"]
    try:
        res = world.session("down", world.alice)
        assert res.returncode == 0, res.stderr
        assert not is_up(world.n1, "vde0")
        assert not ping_once(world.c, world.n2, A1, wait=1)
    finally:
        res = world.session("up", world.alice)
    assert res.returncode == 0, res.stderr
    assert is_up(world.n1, "vde0")
    assert pings(world.c.lan, world.n2, A1)
    after = port(world.c, 1, world.alice)
    assert (after["endpoint_pid"], after["restarts"]) == (pid, 0), "the endpoint lived through it"
