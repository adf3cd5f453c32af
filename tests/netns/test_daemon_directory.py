"""A directory outage must not let managed users onto the host network.

The managed group lives only in a test NSS source, libnss_vxfail.so.2
(nss_vxfail.c, built here), that can be switched off like an unreachable
LDAP server behind sssd: getgrnam/getgrgid then find nothing and
getgrouplist quietly returns the local groups only. The daemon runs in a
mount namespace of its own in which /etc/nsswitch.conf (bound over the
machine's, which is never changed) says `group: files vxfail`.

While the source is down every open is refused with an error (pam_vxvdex
then refuses the login) instead of answered "unmanaged" (PAM_IGNORE, the
host network), and the log says what failed; once it is back, all is as
before. The managed group is given by name and by gid.

    h1: vxvdexd (own mount ns: nsswitch.conf -> group: files vxfail)
        alice: local user, member of vxdir<tag> (only in vxfail); dave: not a member
"""

from __future__ import annotations

import grp
import subprocess
from pathlib import Path

import pytest
from cluster import Cluster
from lan import REPO, sh, tool, wait_for
from runtrace import RunTrace, running_cluster

from vxvdex import control

SOURCE = REPO / "tests" / "netns" / "nss_vxfail.c"
GID = 3_999_123          # no real group has it (checked below)


def build_module(out: Path, group: str, member: str, down: Path) -> None:
    defines = [f'-DVXFAIL_GROUP="{group}"', f"-DVXFAIL_GID={GID}", f'-DVXFAIL_MEMBER="{member}"',
               f'-DVXFAIL_DOWN="{down}"']
    sh("cc", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *defines, "-o",
       str(out / "libnss_vxfail.so.2"), str(SOURCE))


def nsswitch(out: Path) -> Path:
    """The machine's nsswitch.conf with the group source replaced."""
    lines = [line for line in Path("/etc/nsswitch.conf").read_text().splitlines()
             if not line.startswith(("group:", "initgroups:"))]
    path = out / "nsswitch.conf"
    path.write_text("\n".join([*lines, "group: files vxfail", ""]))
    return path


def start_daemon(c: Cluster, out: Path, managed: str) -> subprocess.Popen:
    """vxvdexd on h1 in a mount namespace of its own that sees our nsswitch.conf."""
    rd = c.run_dir(1)
    rd.mkdir(parents=True, exist_ok=True)
    cfg = c.dir / "h1.yaml"
    cfg.write_text(f"managed_groups: [{managed}]\nrun_dir: {rd}\nnetns_name: {c.lan.prefix}-h1-{{user}}\n")
    script = 'mount --bind "$1" /etc/nsswitch.conf && shift && exec env LD_LIBRARY_PATH="$0" "$@"'
    own_mounts = ("unshare", "--mount", "--propagation", "slave", "--")
    proc = c.lan.spawn(c.lan.host(1), *own_mounts, "sh", "-c", script, str(out), str(nsswitch(out)),
                       tool("vxvdexd"), "--config", str(cfg), log=c.dir / "vxvdexd-h1.log", host_mounts=True)
    c.daemons[1] = proc
    wait_for(lambda: proc.poll() is not None or _answers(c), timeout=15, what="vxvdexd on h1")
    assert proc.poll() is None, c.log(1)
    return proc


def _answers(c: Cluster) -> bool:
    try:
        return c.ask(1, "version").status == "ok"
    except control.DaemonUnavailable:
        return False


@pytest.mark.parametrize("by", ["name", "gid"])
def test_a_directory_outage_refuses_logins(tmp_path: Path, by: str,
                                           nothing_of_the_run_left: list[RunTrace]) -> None:
    with pytest.raises(KeyError):
        grp.getgrgid(GID)
    tmp_path.chmod(0o755)
    down = tmp_path / "down"
    with running_cluster(hosts=1, traces=nothing_of_the_run_left) as c:
        local = f"vxl{c.tag}"
        c.group(local)
        alice = c.user("alice", local, managed=False)
        dave = c.user("dave", local, managed=False)
        group = f"vxdir{c.tag}"
        build_module(tmp_path, group, alice, down)
        start_daemon(c, tmp_path, group if by == "name" else str(GID))
        # Directory up: alice is managed (no namespace yet), dave is not.
        assert c.ask(1, f"status {alice}").code == "ENOENT", c.log(1)
        assert c.ask(1, f"status {dave}").status == "unmanaged"
        down.touch()
        for user in (alice, dave):  # who is managed cannot be known: nobody goes through
            answer = c.ask(1, f"open {user} s1")
            assert answer.status == "error" and answer.fd is None, (user, answer)
            assert "does not resolve" in answer.text, answer
        assert f"managed group {group if by == 'name' else GID}" in c.log(1), c.log(1)
        down.unlink()
        assert c.ask(1, f"status {alice}").code == "ENOENT"
        assert c.ask(1, f"status {dave}").status == "unmanaged"
        assert "Traceback" not in c.log(1)
