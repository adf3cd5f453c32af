"""The port guard (vxvdex/guard/portguard.py, vxvdex/guard/bindguard.py): on a host with a
running vxvdexd, a user who is neither root nor the endpoint user can
neither send into a VLAN with a plain UDP socket (to the group or to an
endpoint's unicast port) nor bind the vxvde port to read one, while the
endpoints and root's `vde_plug vxvde:///grp=GID` still carry frames; with
`port_guard: false` the same user does both.

    h1: alice (managed, group A), mallory (not managed, group O),
        root's vde_plug on a leaf, listeners      h2: alice, listeners
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from cluster import Cluster
from endpoints import pings, vde_plug
from lan import REPO, Lan, sh, wait_for
from provisioned import add_addr

from vxvdex.dataplane import wire

PORT = 14789
UNICAST_PORT = 15000
INJECT = str(REPO / "tests" / "netns" / "vxinject.py")
LISTEN = str(REPO / "tests" / "netns" / "vxlisten.py")


def as_user(user: str | None, cmd: list[str]) -> list[str]:
    """cmd as user (after entering the namespace: `ip netns exec` needs root)."""
    if user is None:
        return cmd
    gid = str(pwd.getpwnam(user).pw_gid)
    return ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups", *cmd]


class Listener:
    """A process on a host printing every datagram it gets on a port."""

    def __init__(self, c: Cluster, host: int, port: int, group: str | None = None,
                 user: str | None = None, inner: tuple[str, ...] = (), on_group: bool = False) -> None:
        """inner: a command that runs the listener (as user); on_group: bind group, not the wildcard."""
        cmd = as_user(user, [*inner, sys.executable, LISTEN, str(port), *((group,) if group else ()),
                             *(("--on-group",) if on_group else ())])
        self.proc = c.lan.spawn(c.lan.host(host), *cmd, capture=True)
        assert self.proc.stdout is not None
        self.ready = self.proc.stdout.readline().strip() == "ready"  # else it could not bind
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
    return sh("ip", "netns", "exec", c.lan.host(host), *as_user(user, [sys.executable, INJECT, *args]),
              check=False)


def attempts(c: Cluster, mallory: str, group: str, gid: int, tag: str) -> None:
    """mallory's three tries from h1, then root's two, which must arrive (the fact to wait for)."""
    inject(c, 1, mallory, group, str(PORT), str(gid), f"mcast-{tag}")
    inject(c, 1, mallory, c.lan.addr4(2), str(UNICAST_PORT), str(gid), f"ucast-{tag}")
    inject(c, 1, mallory, c.lan.addr4(2), str(UNICAST_PORT), str(gid), f"plain-{tag}", "--raw")
    assert inject(c, 1, None, group, str(PORT), str(gid), f"root-{tag}").returncode == 0
    assert inject(c, 1, None, c.lan.addr4(2), str(UNICAST_PORT), str(gid), f"rootu-{tag}").returncode == 0


@pytest.fixture
def guarded(cluster: Cluster) -> Iterator[tuple[Cluster, str, str, int]]:
    ga, go = f"vxa{cluster.tag}", f"vxo{cluster.tag}"
    gid = cluster.group(ga)
    cluster.group(go)
    alice = cluster.user("alice", ga)
    mallory = cluster.user("mallory", go, managed=False)
    cluster.start(1)
    cluster.start(2)
    yield cluster, alice, mallory, gid


def test_an_unmanaged_user_can_neither_inject_nor_read(guarded: tuple[Cluster, str, str, int]) -> None:
    c, alice, mallory, gid = guarded
    ns1, ns2 = c.open(1, alice), c.open(2, alice)
    group = str(wire.group_address(gid))
    spy_any, spy_group = Listener(c, 1, PORT, user=mallory), Listener(c, 1, PORT, group, user=mallory)
    assert not spy_any.ready and not spy_group.ready, "mallory bound the vxvde port"
    here, there = Listener(c, 1, PORT, group), Listener(c, 2, PORT, group)
    unicast = Listener(c, 2, UNICAST_PORT)

    attempts(c, mallory, group, gid, "on")
    here.wait("root-on")
    there.wait("root-on")
    unicast.wait("rootu-on")
    assert not here.got("mcast-on"), "mallory's datagram reached a socket on her own host"
    assert not there.got("mcast-on"), "mallory's datagram left her host for the group"
    assert not unicast.got("ucast-on"), "mallory sent a vxvde header to a unicast port"
    unicast.wait("plain-on")  # her other UDP is not touched

    # The endpoints, and root's vde_plug (the administrators' way in), still carry frames.
    add_addr(ns1, "198.51.100.1/24")
    add_addr(ns2, "198.51.100.2/24")
    assert pings(c.lan, ns1, "198.51.100.2")
    leaf, _ = c.lan.leaf(1, f"{c.lan.prefix}-adm", vde_plug(f"vxvde:///grp={gid}", "adm0"),
                         ["198.51.100.9/24"])
    assert pings(c.lan, leaf, "198.51.100.2")


def test_port_guard_false_removes_both_halves(guarded: tuple[Cluster, str, str, int]) -> None:
    c, _alice, mallory, gid = guarded
    assert "vxvdex_guard" in c.lan.run(c.lan.host(1), "nft", "list", "tables").stdout
    c.lan.stop(c.daemons[1])
    c.extra_config = "port_guard: false\n"
    c.start(1)
    assert "vxvdex_guard" not in c.lan.run(c.lan.host(1), "nft", "list", "tables").stdout
    group = str(wire.group_address(gid))
    spy = Listener(c, 1, PORT, group, user=mallory)
    assert spy.ready
    there, unicast = Listener(c, 2, PORT, group), Listener(c, 2, UNICAST_PORT)
    attempts(c, mallory, group, gid, "off")
    there.wait("mcast-off")
    unicast.wait("ucast-off")
    spy.wait("root-off")


GUARD = ("from vxvdex.guard import bindguard; import sys; "
         "bindguard.install(14789, [], 4, None) if sys.argv[1] == 'install' else bindguard.remove(); "
         "print(f'{bindguard.NAME_PREFIX}{bindguard.netns_cookie():x}')")


def attached_names() -> list[str]:
    """The names of the bind programs on the cgroup2 root (as root, anywhere)."""
    from vxvdex.guard import bindguard as b
    cgroup, names = b._cgroup2_root(), []
    try:
        for attach_type in (b.BPF_CGROUP_INET4_BIND, b.BPF_CGROUP_INET6_BIND):
            for prog_id in b._attached(cgroup, attach_type):
                fd = b._bpf(b.BPF_PROG_GET_FD_BY_ID, prog_id.to_bytes(4, "little"))
                names.append(b._prog_name_and_id(fd)[0])
                os.close(fd)
    finally:
        os.close(cgroup)
    return names


def test_the_bind_program_of_a_dead_namespace_is_swept(lan: Lan) -> None:
    """A namespace that dies with its guard (a test host) leaves its program on
    the cgroup root; the next install or removal anywhere detaches it."""
    dead = lan.add_ns("dead")
    dead_name = lan.run(dead, sys.executable, "-c", GUARD, "install").stdout.strip()
    assert attached_names().count(dead_name) == 2
    sh("ip", "netns", "del", dead)
    assert attached_names().count(dead_name) == 2, "the kernel keeps it: nobody else detaches it"
    live_name = lan.run(lan.host(1), sys.executable, "-c", GUARD, "install").stdout.strip()
    try:
        names = attached_names()
        assert dead_name not in names and names.count(live_name) == 2
    finally:
        lan.run(lan.host(1), sys.executable, "-c", GUARD, "remove")
    assert live_name not in attached_names()


def test_a_gso_send_cannot_hide_a_vxvde_header_behind_a_first_segment(
        guarded: tuple[Cluster, str, str, int]) -> None:
    """One UDP GSO send (UDP_SEGMENT) is one packet for the output hook and
    several datagrams on the wire: a header in the second segment must not
    pass where the same header alone is dropped."""
    c, _alice, mallory, gid = guarded
    unicast = Listener(c, 2, UNICAST_PORT)
    inject(c, 1, mallory, c.lan.addr4(2), str(UNICAST_PORT), str(gid), "gso-on", "--gso")
    assert inject(c, 1, None, c.lan.addr4(2), str(UNICAST_PORT), str(gid), "rootu-gso").returncode == 0
    unicast.wait("rootu-gso")
    assert not unicast.got("gso-on"), "mallory's vxvde header passed in a second GSO segment"
    inject(c, 1, mallory, c.lan.addr4(2), str(UNICAST_PORT), str(gid), "plaingso", "--raw", "--gso")
    unicast.wait("plaingso")  # her other GSO sends are not touched


def test_a_subordinate_gid_does_not_open_another_vlan(guarded: tuple[Cluster, str, str, int]) -> None:
    """mallory, whose /etc/subgid range holds alice's gid (id-mapped directory
    gids can fall inside such ranges), maps it in a user namespace with the
    setuid newgidmap, takes it as her gid and binds alice's group on the
    vxvde port, in the host's network namespace."""
    c, _alice, mallory, gid = guarded
    sh("usermod", "--add-subgids", f"{gid}-{gid}", mallory)
    group = str(wire.group_address(gid))
    uid = pwd.getpwnam(mallory).pw_uid
    subgid = ("unshare", "--user", f"--map-users={uid},0,1", f"--map-groups={gid},0,1",
              "setpriv", "--regid=0", "--clear-groups")
    spy = Listener(c, 1, PORT, group, user=mallory, inner=subgid, on_group=True)
    if spy.ready:
        here = Listener(c, 1, PORT, group)
        assert inject(c, 1, None, group, str(PORT), str(gid), "root-subgid").returncode == 0
        here.wait("root-subgid")
    assert not spy.got("root-subgid"), "mallory read alice's VLAN through a subordinate gid"
    assert not spy.ready, "mallory bound alice's group on the vxvde port"
    # Her own gid, mapped to root by `unshare -r`, is still hers (as af_vxvdex sees it).
    own = str(wire.group_address(pwd.getpwnam(mallory).pw_gid))
    assert Listener(c, 1, PORT, own, user=mallory, inner=("unshare", "-r"), on_group=True).ready


def test_a_socket_bound_before_the_guard_stops_reading(cluster: Cluster) -> None:
    """mallory binds the vxvde port before vxvdexd first starts (the package
    is installed on a running host); the guard's start must not leave her
    that socket, which would go on reading every VLAN of the host."""
    ga, go = f"vxa{cluster.tag}", f"vxo{cluster.tag}"
    gid = cluster.group(ga)
    cluster.group(go)
    alice = cluster.user("alice", ga)
    mallory = cluster.user("mallory", go, managed=False)
    group = str(wire.group_address(gid))
    spy = Listener(cluster, 1, PORT, group, user=mallory)
    assert spy.ready, "no guard yet: the bind succeeds"
    cluster.start(1)
    cluster.open(1, alice)
    here = Listener(cluster, 1, PORT, group)
    assert inject(cluster, 1, None, group, str(PORT), str(gid), "root-pre").returncode == 0
    here.wait("root-pre")
    assert not spy.got("root-pre"), "mallory's socket from before the guard reads alice's VLAN"
    assert "bound before the port guard" in cluster.log(1)
