"""What an unprivileged user can take from the host: group binds only on the
vxvde port(s) (`ports`), a bounded number of sockets per uid and VLAN
(`maxsockets`), and receive buffers charged to the user's memory cgroup."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import vxkguest as vx
from vxkguest import ANY, GROUP, PORT

USER = 61500  # a uid of nobody in particular, gid VNI
OTHER_USER = 61501
CGROUP_ROOT = Path("/sys/fs/cgroup")


def test_group_bind_only_on_vxvde_ports(lan: vx.Lan, family: int) -> None:
    """The attack: bind group:P for a host service's port P, then reach that
    service's *:P socket through multicast loopback. Only `ports` may be bound."""
    f = family
    socks = [vx.vx_socket(f) for _ in range(3)]
    try:
        for port in (5353, 1024, PORT + 1):
            with pytest.raises(PermissionError):
                socks[0].bind((GROUP[f], port))
        socks[0].bind((GROUP[f], PORT))
        with vx.param("ports", f"{PORT},{PORT + 1}"):
            assert vx.get_param("ports") == f"{PORT},{PORT + 1}"
            socks[1].bind((GROUP[f], PORT + 1))
        with pytest.raises(PermissionError):
            socks[2].bind((GROUP[f], PORT + 1))
        # unicast sockets still take an ephemeral port
        socks[2].bind((ANY[f], 0))
    finally:
        for s in socks:
            s.close()


def _open_until_refused(uid: int, gid: int, most: int) -> tuple[int, int]:
    """As uid/gid, open AF_VXVDEX sockets until refused (or most are open):
    (how many opened, errno of the refusal or 0)."""

    def run() -> tuple[int, int]:
        resource.setrlimit(resource.RLIMIT_NOFILE, (most + 64, most + 64))
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        fds: list[int] = []
        try:
            while len(fds) < most:
                fds.append(socket.socket(vx.AF_VXVDEX, socket.SOCK_DGRAM, socket.AF_INET).detach())
        except OSError as e:
            return len(fds), e.errno or -1
        return len(fds), 0

    return vx.in_child(run)  # type: ignore[no-any-return]


def test_sockets_per_uid_are_limited(lan: vx.Lan) -> None:
    """The attack: one user opens thousands of sockets (each unicast one
    holds an ephemeral port of the host). Refused past `maxsockets`."""
    limit = int(vx.get_param("maxsockets")) if (vx.PARAMS / "maxsockets").exists() else 64
    assert _open_until_refused(USER, vx.VNI, 3000) == (limit, errno.EMFILE)
    with vx.param("maxsockets", "5"):
        assert _open_until_refused(USER, vx.VNI, 100) == (5, errno.EMFILE)
        # the count is per uid and VLAN, and goes back down at close
        assert _open_until_refused(USER, vx.VNI, 100) == (5, errno.EMFILE)
        assert _open_until_refused(OTHER_USER, vx.VNI, 100) == (5, errno.EMFILE)
        assert _open_until_refused(USER, vx.OTHER_VNI, 100) == (5, errno.EMFILE)
        # an administrator (CAP_NET_ADMIN) is not counted
        assert _open_until_refused(0, vx.VNI, 20) == (20, 0)


@contextlib.contextmanager
def memory_cgroup(name: str) -> Iterator[Path]:
    """A cgroup v2 child with the memory controller (mounted if need be)."""
    mounted = False
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        subprocess.run(["mount", "-t", "cgroup2", "none", str(CGROUP_ROOT)], check=True)
        mounted = True
    cg = CGROUP_ROOT / name
    try:
        (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory")
        cg.mkdir()
        yield cg
    finally:
        if cg.exists():
            cg.rmdir()
        if mounted:
            subprocess.run(["umount", str(CGROUP_ROOT)], check=True)


def test_receive_buffers_are_charged(lan: vx.Lan) -> None:
    """Each socket keeps a 64 KiB receive buffer from its first recv on: that
    memory must count against the caller's memory cgroup."""
    n = 32
    with memory_cgroup("vxkt-rxbuf") as cg:
        to_parent, from_child = os.pipe()
        to_child, from_parent = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(to_parent)
            os.close(from_parent)
            try:
                (cg / "cgroup.procs").write_text(str(os.getpid()))
                socks = [vx.vx_socket(socket.AF_INET) for _ in range(n)]
                os.write(from_child, b"1")
                os.read(to_child, 1)
                for s in socks:
                    with contextlib.suppress(BlockingIOError):
                        s.recv(100, socket.MSG_DONTWAIT)
                os.write(from_child, b"2")
                os.read(to_child, 1)
            finally:
                os._exit(0)
        os.close(from_child)
        os.close(to_child)
        try:
            assert os.read(to_parent, 1) == b"1", "the child failed"
            before = int((cg / "memory.current").read_text())
            os.write(from_parent, b"g")
            assert os.read(to_parent, 1) == b"2", "the child failed"
            grown = int((cg / "memory.current").read_text()) - before
        finally:
            os.close(from_parent)
            os.close(to_parent)
            os.waitpid(pid, 0)
        assert grown >= n * 65536, f"{n} receive buffers grew the cgroup by {grown} bytes only"


def test_python_endpoint_names_the_ports_parameter(lan: vx.Lan) -> None:
    """An endpoint configured for another port fails with the way out."""
    from vxvdex.dataplane import transport
    from vxvdex.dataplane.url import parse

    url = parse(f"vxvde://{GROUP[socket.AF_INET]}/vni={vx.VNI}/port={PORT + 1}")

    def run() -> tuple[int, str]:
        os.setresgid(vx.VNI, vx.VNI, vx.VNI)
        try:
            transport.open_transport(url, "vxvdex")
        except transport.TransportError as e:
            return e.errno or 0, str(e)
        return 0, ""

    err, msg = vx.in_child(run)
    assert err == errno.EACCES and "/sys/module/af_vxvdex/parameters/ports" in msg, msg
