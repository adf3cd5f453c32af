"""pam_vxvdex mountns binds /etc/netns/NAME/x over /etc/x (as `ip netns exec`
does; vxvdexd writes resolv.conf there for served VLANs), but only what is
root's: a link, or a file someone else owns or may write, is never bound
(a user must not get a file of their choice over /etc in a login)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest
from pamtest import Daemon, stack
from test_module import PAM_SUCCESS, h1, people, probe_in_shared_mounts  # noqa: F401 - fixtures

from vxvdex import control
from vxvdex.services import vlans


def test_only_roots_files_are_bound(module: Path, pam_service: Callable[[str], str],
                                    h1: Daemon, people: dict[str, str],  # noqa: F811
                                    tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    alice = people["alice"]
    uid = pwd.getpwnam(alice).pw_uid
    etc_netns = Path("/etc/netns")
    made_etc_netns = not etc_netns.exists()
    conf = etc_netns / h1.netns(alice)
    hosts, services, protocols = (Path(f"/etc/{n}").read_text() for n in ("hosts", "services", "protocols"))
    mine = tmp_path / "mine"
    mine.write_text("192.0.2.66 evil.example\n")
    os.chown(mine, uid, -1)
    try:
        conf.mkdir(parents=True)
        (conf / "resolv.conf").write_text("nameserver 192.0.2.53\n")
        (conf / "hosts").symlink_to(mine)                    # a link to the user's file
        (conf / "services").write_text("evil 1/tcp\n")       # a file the user owns
        os.chown(conf / "services", uid, -1)
        (conf / "protocols").write_text("evil 1 EVIL\n")     # root's, but anyone may write it
        (conf / "protocols").chmod(0o666)
        monkeypatch.setenv("PROBE_ETC", "hosts services protocols")
        service = pam_service(stack(module, f"socket={h1.socket} mountns"))
        out, _parent = probe_in_shared_mounts(service, alice)
        assert out["open"] == PAM_SUCCESS, out
        assert out["resolv_conf"] == "nameserver 192.0.2.53\n"
        assert out["etc"] == {"hosts": hosts, "services": services, "protocols": protocols}
    finally:
        for name in ("resolv.conf", "hosts", "services", "protocols"):
            (conf / name).unlink(missing_ok=True)
        if conf.exists():
            conf.rmdir()
        if made_etc_netns and etc_netns.exists():
            etc_netns.rmdir()


def test_login_on_a_served_vlan_resolves_through_the_gateway(
        module: Path, pam_service: Callable[[str], str], daemons: Callable[..., Daemon],
        people: dict[str, str]) -> None:  # noqa: F811
    """A real login (python-pam) of a user whose VLAN has a vlans: entry: it
    opens at once though no gateway answers, and /etc/resolv.conf in the
    session is the one vxvdexd wrote for the namespace."""
    host, alice = vlans.this_host(), people["alice"]
    d = daemons(1, [people["ga"], people["gb"]], hosts=f"[{host}]",
                vlans=f"{{{people['ga']}: {{subnet: 192.0.2.128/26, server: {host}, domain: a.vx}}}}")
    conf = Path("/etc/netns") / d.netns(alice)
    try:
        service = pam_service(stack(module, f"socket={d.socket} mountns"))
        out, _parent = probe_in_shared_mounts(service, alice)
        assert out["open"] == PAM_SUCCESS, out
        assert out["resolv_conf"] == (conf / "resolv.conf").read_text()
        assert out["resolv_conf"].splitlines()[1:] == ["search a.vx", "nameserver 192.0.2.129"]
        status = control.ask(d.run_dir, f"status {alice}").json()
        assert status["ports"][0]["dhcp"]["state"] == "waiting for DHCP from the gateway"
    finally:
        (conf / "resolv.conf").unlink(missing_ok=True)  # the daemon is stopped, not told to remove
        if conf.exists():
            conf.rmdir()
