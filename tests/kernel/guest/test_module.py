"""Module life cycle: unloading with open sockets, load/unload cycles with
traffic in between, and leak checks."""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
from pathlib import Path

import pytest
import vxkguest as vx
from vxkguest import ANY, LOCAL, PEER, PORT

KO = os.environ.get("VXVDEX_KO", "")
CYCLES = 100


def _udp_inuse() -> tuple[int, int]:
    text = Path("/proc/net/sockstat").read_text() + Path("/proc/net/sockstat6").read_text()
    v4 = re.search(r"^UDP: inuse (\d+)", text, re.M)
    v6 = re.search(r"^UDP6: inuse (\d+)", text, re.M)
    assert v4 and v6
    return int(v4.group(1)), int(v6.group(1))


def test_unload_with_open_socket_refused(lan: vx.Lan) -> None:
    ep = vx.endpoint(socket.AF_INET)
    try:
        with pytest.raises(OSError) as e:
            vx.delete_module()
        assert e.value.errno in (errno.EBUSY, errno.EAGAIN)
        assert vx.module_loaded()
        peer = lan.peer_socket(socket.AF_INET, (ANY[socket.AF_INET], PORT), group=True)
        try:
            ep.ucast.sendto(vx.frame(), ep.group)
            assert vx.recv(peer)[0] == vx.frame()
        finally:
            peer.close()
    finally:
        ep.close()


def _traffic(lan: vx.Lan, peer: socket.socket) -> None:
    """Both families: endpoint, a learned peer, a reply, then close all."""
    for f in vx.FAMILIES:
        ep = vx.endpoint(f)
        try:
            ep.ucast.sendto(vx.frame(), ep.group)
            if f == socket.AF_INET:
                peer.sendto(vx.frame(), (LOCAL[f], ep.uport))
                _, addr = vx.recv(ep.ucast)
                ep.ucast.sendto(vx.frame(), addr)
        finally:
            ep.close()


def test_load_unload_cycles(lan: vx.Lan) -> None:
    assert KO, "VXVDEX_KO is not set"
    params = f"ifindex={lan.ifindex}"
    peer = lan.peer_socket(socket.AF_INET, (PEER[socket.AF_INET], 0))
    base = _udp_inuse()
    try:
        vx.delete_module()
        for i in range(CYCLES):
            vx.load_module(KO, params)
            if i % 10 == 0:
                _traffic(lan, peer)
            else:
                for f in vx.FAMILIES:
                    vx.vx_socket(f).close()
            assert vx.stats()["sockets"] == 0
            vx.delete_module()
        assert not vx.module_loaded()
        for bad in ("maxttl=0", "maxttl=256", "mingid=16777216", "ifindex=-1"):
            with pytest.raises(OSError) as e:
                vx.load_module(KO, bad)
            assert e.value.errno == errno.EINVAL, bad
            assert not vx.module_loaded()
    finally:
        if not vx.module_loaded():
            vx.load_module(KO, params)
        peer.close()
    assert _udp_inuse() == base, "lower UDP sockets leaked"


def test_kmemleak(lan: vx.Lan) -> None:
    knob = Path("/sys/kernel/debug/kmemleak")
    if not knob.exists():
        pytest.skip("this kernel has no kmemleak (CONFIG_DEBUG_KMEMLEAK is not set in Debian's kernels)")
    knob.write_text("clear")
    for _ in range(10):
        _traffic(lan, lan.peer_socket(socket.AF_INET, (PEER[socket.AF_INET], 0)))
    knob.write_text("scan")
    report = knob.read_text()
    assert "af_vxvdex" not in report, report


def test_install_false_keeps_the_alias_out(lan: vx.Lan, tmp_path: Path) -> None:
    """vxvdex-dkms's README.Debian: the alias net-pf-13 loads the module on the
    first socket(13, ...) whatever modules-load.d says; `install af_vxvdex
    /bin/false` in modprobe.d keeps it out. The module is "installed" in a
    module tree of its own (a depmod of all of the kernel's modules takes
    minutes under TCG), mounted over the kernel's for the test."""
    assert KO, "VXVDEX_KO is not set"
    kver = os.uname().release
    system = Path(f"/lib/modules/{kver}")
    tree = tmp_path / "lib" / "modules" / kver
    (tree / "updates").mkdir(parents=True)
    shutil.copy(KO, tree / "updates" / "af_vxvdex.ko")
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (system / name).exists():
            shutil.copy(system / name, tree / name)
    vx.sh("depmod", "-b", str(tmp_path), kver)
    off = Path("/etc/modprobe.d/vxkt-vxvdex-off.conf")
    vx.sh("mount", "--bind", str(tree), str(system))
    try:
        vx.delete_module()
        vx.vx_socket(socket.AF_INET).close()  # the kernel loads it by its alias
        assert vx.module_loaded()
        vx.delete_module()
        off.write_text("install af_vxvdex /bin/false\n")
        with pytest.raises(OSError) as e:
            vx.vx_socket(socket.AF_INET)
        assert e.value.errno == errno.EAFNOSUPPORT
        assert not vx.module_loaded()
    finally:
        off.unlink(missing_ok=True)
        vx.sh("umount", str(system))
        if vx.module_loaded():
            vx.delete_module()
        vx.load_module(KO, f"ifindex={lan.ifindex}")
