"""The port guard (vxvdex/guard.py): on a host with a running vxvdexd, a user
who is not root and not the endpoint user cannot send into a VLAN with a
plain UDP socket, neither to the group nor to an endpoint's unicast port,
while the endpoints and root's `vde_plug vxvde:///grp=GID` still carry
frames; with `port_guard: false` the same datagrams get through.

    h1: alice (managed), mallory (not managed, same primary group),
        root's vde_plug on a leaf        -> listeners on h1 and h2
    h2: alice (managed)
"""

from __future__ import annotations

import pwd
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from cluster import Cluster
from endpoints import pings, vde_plug
from lan import REPO, sh, wait_for
from provisioned import add_addr

from vxvdex import wire

PORT = 14789
UNICAST_PORT = 15000
INJECT = str(REPO / "tests" / "netns" / "vxinject.py")
LISTEN = str(REPO / "tests" / "netns" / "vxlisten.py")


class Listener:
    """A root process on a host printing every datagram it gets on a port."""

    def __init__(self, c: Cluster, host: int, port: int, group: str | None = None) -> None:
        self.proc = c.lan.spawn(c.lan.host(host), sys.executable, LISTEN, str(port),
                                *((group,) if group else ()), capture=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def got(self, marker: str) -> bool:
        return any(marker in line for line in self.lines)

    def wait(self, marker: str) -> None:
        wait_for(lambda: self.got(marker), timeout=5, what=f"{marker} to arrive")


def inject(c: Cluster, host: int, user: str | None, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, INJECT, *args]
    if user:  # `ip netns exec` needs root: enter first, then become the user
        gid = str(pwd.getpwnam(user).pw_gid)
        cmd = ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups", *cmd]
    return sh("ip", "netns", "exec", c.lan.host(host), *cmd, check=False)


def attempts(c: Cluster, mallory: str, group: str, gid: int, tag: str) -> None:
    """mallory's three tries from h1; then root's, which must arrive (the fact we wait for)."""
    inject(c, 1, mallory, group, str(PORT), str(gid), f"mcast-{tag}")
    inject(c, 1, mallory, c.lan.addr4(2), str(UNICAST_PORT), str(gid), f"ucast-{tag}")
    inject(c, 1, mallory, c.lan.addr4(2), str(UNICAST_PORT), str(gid), f"plain-{tag}", "--raw")
    assert inject(c, 1, None, group, str(PORT), str(gid), f"root-{tag}").returncode == 0
    assert inject(c, 1, None, c.lan.addr4(2), str(UNICAST_PORT), str(gid), f"rootu-{tag}").returncode == 0


@pytest.fixture
def guarded(cluster: Cluster) -> Iterator[tuple[Cluster, str, str, int]]:
    ga = f"vxa{cluster.tag}"
    gid = cluster.group(ga)
    alice = cluster.user("alice", ga)
    mallory = cluster.user("mallory", ga, managed=False)
    cluster.start(1)
    cluster.start(2)
    yield cluster, alice, mallory, gid


def test_an_unmanaged_user_cannot_send_into_a_vlan(guarded: tuple[Cluster, str, str, int]) -> None:
    c, alice, mallory, gid = guarded
    ns1, ns2 = c.open(1, alice), c.open(2, alice)
    group = str(wire.group_address(gid))
    here, there = Listener(c, 1, PORT, group), Listener(c, 2, PORT, group)
    unicast = Listener(c, 2, UNICAST_PORT)

    attempts(c, mallory, group, gid, "on")
    here.wait("root-on")
    there.wait("root-on")
    unicast.wait("rootu-on")
    assert not here.got("mcast-on"), "mallory's datagram reached a socket on her own host"
    assert not there.got("mcast-on"), "mallory's datagram left her host for the group"
    assert not unicast.got("ucast-on"), "mallory sent a vxvde header to a unicast port"
    unicast.wait("plain-on")  # other UDP of hers is not touched

    # The endpoints, and root's vde_plug (the administrators' way in), still carry frames.
    add_addr(ns1, "198.51.100.1/24")
    add_addr(ns2, "198.51.100.2/24")
    assert pings(c.lan, ns1, "198.51.100.2")
    leaf, _ = c.lan.leaf(1, f"{c.lan.prefix}-adm", vde_plug(f"vxvde:///grp={gid}", "adm0"),
                         ["198.51.100.9/24"])
    assert pings(c.lan, leaf, "198.51.100.2")


def test_port_guard_false_removes_the_table(guarded: tuple[Cluster, str, str, int]) -> None:
    c, _alice, mallory, gid = guarded
    assert "vxvdex_guard" in c.lan.run(c.lan.host(1), "nft", "list", "tables").stdout
    c.lan.stop(c.daemons[1])
    c.extra_config = "port_guard: false\n"
    c.start(1)
    assert "vxvdex_guard" not in c.lan.run(c.lan.host(1), "nft", "list", "tables").stdout
    group = str(wire.group_address(gid))
    there, unicast = Listener(c, 2, PORT, group), Listener(c, 2, UNICAST_PORT)
    attempts(c, mallory, group, gid, "off")
    there.wait("mcast-off")
    unicast.wait("ucast-off")
