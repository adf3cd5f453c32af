"""Abuse of the control socket: malformed requests get `error EINVAL ...` and
the daemon keeps serving; a non-root peer may act only for itself (the
daemon believes SO_PEERCRED, never the message); other users' sessions are
untouched.

    h1: bob 198.51.100.1, alice      h2: bob 198.51.100.2
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from cluster import Cluster
from endpoints import pings
from provisioned import add_addr, ask_as, is_up, ns_inode, port, raw_ask, status, two_daemons_with_users
from runtrace import running_cluster

B1, B2 = "198.51.100.1", "198.51.100.2"


class World:
    def __init__(self, c: Cluster) -> None:
        self.c = c
        (self.alice, self.bob), self.dave = two_daemons_with_users(c, "alice", "bob")
        self.bob_ns = c.open(1, self.bob)
        add_addr(self.bob_ns, f"{B1}/24")
        add_addr(c.open(2, self.bob), f"{B2}/24")
        self.alice_ns = c.open(1, self.alice)
        self.bob_pid = port(c, 1, self.bob)["endpoint_pid"]

    def serving(self) -> bool:
        return raw_ask(self.c.run_dir(1), b"version").startswith(b"ok ") and self.c.daemons[1].poll() is None

    def bob_untouched(self) -> None:
        st = status(self.c, 1, self.bob)
        assert st["sessions"] == ["s1"] and st["pinned"]
        assert st["ports"][0]["endpoint_pid"] == self.bob_pid and st["ports"][0]["restarts"] == 0
        assert is_up(self.bob_ns, "vde0")
        assert pings(self.c.lan, self.bob_ns, B2)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cluster(hosts=2) as c:
        yield World(c)


MALFORMED = [
    ("garbage", b"\x00\x01\x02\xff\xfe\x80"),
    ("empty", b""),
    ("only a newline", b"\n"),
    ("only a space", b" "),
    ("non-ASCII user", "open b\u00f6b".encode()),
    ("non-ASCII verb", "\u00f6pen bob".encode()),
    ("huge", b"open " + b"a" * 5000),
    ("one byte too long", b"status " + b"x" * (4096 - 6)),
    ("truncated verb", b"ope"),
    ("unknown verb", b"frobnicate"),
    ("verb in capitals", b"OPEN bob"),
    ("verb glued to argument", b"openbob"),
    ("tab separated", b"open\tbob"),
    ("missing argument", b"open"),
    ("too many arguments", b"open bob s1 extra"),
    ("list with an argument", b"list bob"),
    ("version with an argument", b"version 2"),
    ("two spaces", b"open  bob"),
    ("trailing space", b"status bob "),
    ("path as user", b"status ../../etc/passwd"),
    ("slash in session", b"open bob a/b"),
    ("NUL in user", b"status bob\x00"),
    ("newline inside user", b"open bob\n s1"),
    ("CR LF", b"status bob\r\n"),
    ("user of 65 characters", b"status " + b"u" * 65),
    ("shell metacharacters", b"status bob;id"),
    ("glob", b"status *"),
]


@pytest.mark.parametrize("request_bytes", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_request_is_refused_with_einval(world: World, request_bytes: bytes) -> None:
    answer = raw_ask(world.c.run_dir(1), request_bytes)
    assert answer.startswith(b"error EINVAL "), answer
    assert len(answer.splitlines()) == 1 and len(answer) < 200, answer
    assert world.serving()


def test_silent_and_vanishing_clients_do_not_block_others(world: World) -> None:
    run_dir = world.c.run_dir(1)
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(20)]
    try:
        for s in idle:
            s.connect(str(run_dir / "control"))  # connected, never a word
        for _ in range(20):
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as gone:
                gone.connect(str(run_dir / "control"))
        t0 = time.monotonic()
        assert world.serving()
        assert time.monotonic() - t0 < 1.0
    finally:
        for s in idle:
            s.close()
    assert "Traceback" not in world.c.log(1)


# (request by alice, not root; the answer must start with ...)
AS_ALICE = [
    ("open {bob} s9", "error EPERM "),
    ("close {bob} s1", "error EPERM "),
    ("status {bob}", "error EPERM "),
    ("reprovision {bob}", "error EPERM "),
    ("down {bob}", "error EPERM "),
    ("up {bob}", "error EPERM "),
    ("list", "error EPERM "),
    ("status root", "error EPERM "),
    ("open root", "error EPERM "),
    ("status {dave}", "error EPERM "),
    ("version", "ok "),
    ("status", "ok {"),
    ("status {alice}", "ok {"),
]


@pytest.mark.parametrize(("request_text", "expected"), AS_ALICE, ids=[a[0] for a in AS_ALICE])
def test_a_user_acts_only_for_herself(world: World, request_text: str, expected: str) -> None:
    request = request_text.format(alice=world.alice, bob=world.bob, dave=world.dave)
    got = ask_as(world.alice, world.c.run_dir(1), request)
    assert got["answer"].startswith(expected), got
    assert got["fd_inode"] is None, "no namespace handed out"
    if expected == "ok {":
        assert f'"user": "{world.alice}"' in got["answer"]
    world.bob_untouched()


def test_a_user_opens_her_own_namespace(world: World) -> None:
    """She may rejoin her namespace or a session of hers; only root starts sessions."""
    for request in (f"open {world.alice}", f"open {world.alice} s1"):
        got = ask_as(world.alice, world.c.run_dir(1), request)
        assert got["answer"] == f"ok {world.alice_ns}"
        assert got["fd_inode"] == ns_inode(world.alice_ns)
    got = ask_as(world.alice, world.c.run_dir(1), f"open {world.alice} s2")
    assert got["answer"].startswith("error EPERM ") and got["fd_inode"] is None, got
    assert status(world.c, 1, world.alice)["sessions"] == ["s1"]
    assert ask_as(world.dave, world.c.run_dir(1), f"open {world.dave}")["answer"].startswith("unmanaged ")
    assert ask_as(world.dave, world.c.run_dir(1), f"open {world.bob}")["answer"].startswith("error EPERM ")
    world.bob_untouched()
