"""The VLAN is the effective gid as the initial user namespace sees it: a
user who is "root" with gid 0 inside a user namespace (unshare -U -r) still
gets the VNI of its real egid, from any network namespace."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import vxkguest as vx
from vxkguest import ANY, PORT

SCRIPT = r"""
import json, os, socket
out = {"uid": os.geteuid(), "gid": os.getegid()}
try:
    fd = socket.socket(13, socket.SOCK_DGRAM, socket.AF_INET).detach()
except OSError as e:
    out["socket"] = e.errno
    print(json.dumps(out)); raise SystemExit
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, fileno=fd)
s.bind(("0.0.0.0", 0))
out["port"] = s.getsockname()[1]
def send(vni):
    try:
        data = bytes([8, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0" + b"userns" * 10
        s.sendto(data, ("239.0.3.232", 14789))
        return 0
    except OSError as e:
        return e.errno
out["vni1000"] = send(1000)
out["vni0"] = send(0)
try:
    s.bind(("239.0.3.232", 14789))
except OSError as e:
    out["rebind"] = e.errno
g = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0,
                  fileno=socket.socket(13, socket.SOCK_DGRAM, socket.AF_INET).detach())
for group in ("239.0.0.0", "239.0.3.232"):
    try:
        g.bind((group, 14790)); out["bind " + group] = 0
    except OSError as e:
        out["bind " + group] = e.errno
print(json.dumps(out))
"""


def _run_in_userns(uid: int, gid: int, netns: bool) -> dict[str, int]:
    def drop() -> None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)

    cmd = ["unshare", "-U", "-r"] + (["-n"] if netns else []) + ["/usr/bin/python3", "-c", SCRIPT]
    r = subprocess.run(cmd, preexec_fn=drop, capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _userns_allowed() -> None:
    knob = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if knob.exists():
        knob.write_text("1")


@pytest.mark.parametrize("netns", [False, True], ids=["host-netns", "own-netns"])
def test_userns_root_keeps_real_gid(lan: vx.Lan, netns: bool) -> None:
    group = vx.endpoint(socket.AF_INET)  # the group socket the sender needs
    peer = lan.peer_socket(socket.AF_INET, (ANY[socket.AF_INET], PORT), group=True)
    try:
        out = _run_in_userns(1000, 1000, netns)
        assert (out["uid"], out["gid"]) == (0, 0), "not root inside the user namespace"
        assert "socket" not in out, out
        assert out["vni1000"] == 0 and out["vni0"] == 13  # EACCES
        assert out["bind 239.0.0.0"] == 13 and out["bind 239.0.3.232"] == 0
        data, addr = vx.recv(peer)
        assert data[:8] == vx.header(1000) and addr[1] == out["port"]
    finally:
        peer.close()
        group.close()


def test_userns_below_mingid_refused(lan: vx.Lan) -> None:
    out = _run_in_userns(999, 999, netns=True)
    assert (out["uid"], out["gid"]) == (0, 0)
    assert out["socket"] == 1  # EPERM
