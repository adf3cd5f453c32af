"""The VLAN is the effective gid as the initial user namespace sees it: a
user who is "root" with gid 0 inside a user namespace (unshare -U -r) still
gets the VNI of its real egid, from any network namespace; a gid that a user
namespace maps from the user's subordinate range (newgidmap) gets none."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import vxkguest as vx
import vxkplug
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
for group, port in (("239.0.0.0", 14789), ("239.0.3.232", 14790), ("239.0.3.232", 14789)):
    try:
        g.bind((group, port)); out[f"bind {group}:{port}"] = 0
    except OSError as e:
        out[f"bind {group}:{port}"] = e.errno
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
        assert out["bind 239.0.0.0:14789"] == 13 and out["bind 239.0.3.232:14790"] == 13
        assert out["bind 239.0.3.232:14789"] == 0
        data, addr = vx.recv(peer)
        assert data[:8] == vx.header(1000) and addr[1] == out["port"]
    finally:
        peer.close()
        group.close()


def test_userns_below_mingid_refused(lan: vx.Lan) -> None:
    out = _run_in_userns(999, 999, netns=True)
    assert (out["uid"], out["gid"]) == (0, 0)
    assert out["socket"] == 1  # EPERM


# A child unshares its user namespace; the parent (the same unprivileged user,
# outside it) maps gids into it with the setuid newgidmap, as podman or
# `unshare --map-auto` do. The child then takes each gid in turn and opens an
# AF_VXVDEX socket: the answer is {gid inside: errno or 0}.
SUBGID_SCRIPT = r"""
import ctypes, json, os, socket, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
gidmap, tries = sys.argv[1].split(), [int(g) for g in sys.argv[2].split(",")]
go_r, go_w = os.pipe()
ready_r, ready_w = os.pipe()
out_r, out_w = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        os._exit(3)
    os.write(ready_w, b"u")
    os.read(go_r, 1)
    res = {}
    for g in tries:
        try:
            os.setresgid(g, g, g)
            socket.socket(13, socket.SOCK_DGRAM, socket.AF_INET).close()
            res[g] = 0
        except OSError as e:
            res[g] = e.errno
    os.write(out_w, json.dumps(res).encode())
    os._exit(0)
for fd in (go_r, ready_w, out_w):
    os.close(fd)
assert os.read(ready_r, 1) == b"u", "unshare failed"
m = subprocess.run(["newgidmap", str(pid), *gidmap], capture_output=True, text=True)
os.write(go_w, b"g")
data = os.read(out_r, 65536).decode()
os.waitpid(pid, 0)
print(json.dumps({"newgidmap": m.returncode, "err": m.stderr.strip(), "res": json.loads(data or "{}")}))
"""


@dataclass
class SubgidUser:
    user: vxkplug.User
    passwd: Path
    subgid: Path


@pytest.fixture
def subgid_user(tmp_path: Path) -> SubgidUser:
    """User vxktsub (gid 1000) owning the subordinate gids 200000-265535, in
    a passwd and subgid of our own: the guest's /etc is the live host /etc
    under an overlay, which other programs on the host may be rewriting."""
    user = vxkplug.User("vxktsub", 61600, 1000, False)
    passwd = tmp_path / "passwd"
    passwd.write_text(
        Path("/etc/passwd").read_text()
        + f"{user.name}:x:{user.uid}:{user.gid}::/nonexistent:/usr/sbin/nologin\n"
    )
    subgid = tmp_path / "subgid"
    subgid.write_text(f"{user.name}:200000:65536\n")
    for f in (passwd, subgid):
        f.chmod(0o644)
    return SubgidUser(user, passwd, subgid)


def _subgid_attempt(who: SubgidUser, gidmap: str, tries: list[int]) -> dict[str, int]:
    """SUBGID_SCRIPT as who.user, in a mount namespace where /etc/passwd and
    /etc/subgid are who's files (nothing to undo: it ends with the command)."""
    script = ["/usr/bin/python3", "-c", SUBGID_SCRIPT, gidmap, ",".join(map(str, tries))]
    mounts = 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/subgid && shift 2 && exec "$@"'
    cmd = ["unshare", "-m", "--", "sh", "-c", mounts, "sh", str(who.passwd), str(who.subgid)]
    cmd += vxkplug.as_user(who.user, script)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["newgidmap"] == 0, f"newgidmap failed: {out['err']}"
    return out["res"]  # type: ignore[no-any-return]


def test_subordinate_gids_choose_no_vlan(subgid_user: SubgidUser) -> None:
    """The attack: gid 5 inside is 200005 outside, a gid the user does not
    hold; the kernel must not open VLAN 200005 for it. The user's own gid,
    mapped to 0 inside as `unshare -r` does, still works."""
    res = _subgid_attempt(subgid_user, f"0 {subgid_user.user.gid} 1 1 200000 65535", [5, 0, 7])
    assert res == {"5": 1, "0": 0, "7": 1}  # EPERM, success, EPERM
    res = _subgid_attempt(subgid_user, "0 200000 65536", [0, 1000])
    assert res == {"0": 1, "1000": 1}


def test_maxgid_param() -> None:
    def make(gid: int) -> Callable[[], None]:
        def run() -> None:
            os.setresgid(gid, gid, gid)
            socket.socket(vx.AF_VXVDEX, socket.SOCK_DGRAM, socket.AF_INET).close()

        return run

    vx.in_child(make(5000))
    with vx.param("maxgid", "4999"):
        with pytest.raises(PermissionError):
            vx.in_child(make(5000))
        vx.in_child(make(4999))
