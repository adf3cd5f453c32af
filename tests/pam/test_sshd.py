"""A real sshd on simulated host h1, logged into from h2 with keys.

    h2: ssh client, vxvdexd (alice's and bob's namespaces opened by the test)
    h1: sshd + vxvdexd (after_logout: remove, remove_after: 1)

Debian 12's OpenSSH 9.2 has no PAMServiceName: sshd always uses the PAM
service "sshd". The machine's /etc/pam.d/sshd is never touched: sshd runs in
a private mount namespace (a slave of the host's) in which the test's stack
is bind-mounted over /etc/pam.d/sshd. sshd opens the PAM session in its
privileged monitor before it forks the user's side, so the shell inherits
the namespace (and the monitor, in it, closes the session at logout).
"""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lan import Lan, sh, wait_for
from pamtest import Accounts, Daemon, ip_br_links, wait_gone

PRIVSEP_DIR = Path("/run/sshd")
NET = "198.51.100"
ADDRS = {("alice", 1): f"{NET}.1", ("alice", 2): f"{NET}.2", ("bob", 1): f"{NET}.11", ("bob", 2): f"{NET}.12"}


@pytest.fixture(scope="module")
def privsep_dir() -> Iterator[None]:
    """sshd refuses to start without /run/sshd (systemd's unit normally makes it)."""
    made = not PRIVSEP_DIR.exists()
    if made:
        PRIVSEP_DIR.mkdir(mode=0o755)
    yield
    if made:
        PRIVSEP_DIR.rmdir()


class Ssh:
    """An sshd on host 1 of lan and a key-holding client on host 2."""

    def __init__(self, lan: Lan, workdir: Path, module: Path, socket: Path, users: list[str]) -> None:
        self.lan, self.dir = lan, workdir / "ssh"
        keys = self.dir / "keys"
        keys.mkdir(parents=True, mode=0o755)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "host_key"))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "client_key"))
        for user in users:
            (keys / user).write_text((self.dir / "client_key.pub").read_text())
            (keys / user).chmod(0o644)
        (self.dir / "sshd_config").write_text(
            f"ListenAddress {lan.addr4(1)}:22\nHostKey {self.dir}/host_key\nPidFile none\nUsePAM yes\n"
            f"AuthenticationMethods publickey\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"AuthorizedKeysFile {keys}/%u\nStrictModes no\nPermitRootLogin prohibit-password\n"
            f"UseDNS no\nPrintMotd no\nPrintLastLog no\nLogLevel VERBOSE\n")
        (self.dir / "sshd.pam").write_text(
            f"auth required pam_deny.so\naccount required pam_permit.so\n"
            f"session required pam_permit.so\nsession required {module} socket={socket} debug\n")
        self.log = workdir / "sshd.log"
        self.proc = lan.spawn(lan.host(1), "unshare", "--mount", "--propagation", "slave", "sh", "-c",
                              'mount --bind "$0" /etc/pam.d/sshd && exec /usr/sbin/sshd -D -e -f "$1"',
                              str(self.dir / "sshd.pam"), str(self.dir / "sshd_config"),
                              log=self.log, host_mounts=True)
        wait_for(lambda: "Server listening" in self.log.read_text() or self.proc.poll() is not None,
                 timeout=10, what="sshd to listen")
        assert self.proc.poll() is None, self.log.read_text()

    def command(self, user: str, script: str) -> list[str]:
        return ["ip", "netns", "exec", self.lan.host(2), "ssh", "-F", "/dev/null", "-i",
                str(self.dir / "client_key"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"{user}@{self.lan.addr4(1)}", script]

    def run(self, user: str, script: str) -> subprocess.CompletedProcess:
        res = sh(*self.command(user, script), check=False, timeout=60)
        assert res.returncode == 0, f"ssh {user}: {res.stdout}{res.stderr}\n{self.log.read_text()[-3000:]}"
        return res

    def login(self, user: str) -> tuple[subprocess.Popen, int]:
        """An interactive-like session that lasts until its stdin closes; returns it and its netns inode."""
        proc = subprocess.Popen(self.command(user, "readlink /proc/self/ns/net; exec cat >/dev/null"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lan.procs.append(proc)  # ended by the LAN if the test fails
        assert proc.stdout is not None
        ready = select.select([proc.stdout], [], [], 20)[0]
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("net:["), f"ssh {user} session: {line!r}\n{self.log.read_text()[-3000:]}"
        return proc, int(line.strip()[5:-1])


def logout(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(20) == 0


def pings(ssh: Ssh, user: str, targets: list[str]) -> set[str]:
    """Which targets answer a ping from user's ssh session on h1."""
    script = "; ".join(f"ping -c1 -w3 {t} >/dev/null && echo reached-{t}" for t in targets) + "; true"
    out = ssh.run(user, script).stdout
    return {t for t in targets if f"reached-{t}" in out}


def test_ssh_sessions(module: Path, privsep_dir: None, lan: Lan, workdir: Path,
                      daemons: Callable[..., Daemon], accounts: Accounts) -> None:
    ga, gb = accounts.group("sa"), accounts.group("sb")
    alice, bob = accounts.user("sa", ga), accounts.user("sb", gb)
    names = {"alice": alice, "bob": bob}
    h1 = daemons(1, [ga, gb], after_logout="remove", remove_after=1)
    h2 = daemons(2, [ga, gb])
    for who in ("alice", "bob"):
        h2.ask(f"open {names[who]} test")
        lan.ip(h2.netns(names[who]), "addr", "add", f"{ADDRS[who, 2]}/24", "dev", "vde0")
    ssh = Ssh(lan, workdir, module, h1.socket, [alice, bob, "root"])

    # Two concurrent sessions of alice share her namespace, which has only lo and vde0.
    alice_long, inode = ssh.login(alice)
    assert inode == h1.netns_inode(alice)
    lan.ip(h1.netns(alice), "addr", "add", f"{ADDRS['alice', 1]}/24", "dev", "vde0")
    out = ssh.run(alice, "readlink /proc/self/ns/net; ip -br link").stdout
    assert f"net:[{inode}]" in out
    assert ip_br_links(out) == {"lo", "vde0"}, out

    # alice reaches her namespace on h2 over her VLAN; bob's (another gid) she cannot.
    assert pings(ssh, alice, [ADDRS["alice", 2], ADDRS["bob", 2]]) == {ADDRS["alice", 2]}

    bob_long, bob_inode = ssh.login(bob)
    assert bob_inode == h1.netns_inode(bob) != inode
    lan.ip(h1.netns(bob), "addr", "add", f"{ADDRS['bob', 1]}/24", "dev", "vde0")
    assert pings(ssh, bob, [ADDRS["bob", 2], ADDRS["alice", 2]]) == {ADDRS["bob", 2]}

    # root is not managed: the host's network.
    out = ssh.run("root", "readlink /proc/self/ns/net; ip -br link").stdout
    assert f"net:[{os.stat(f'/run/netns/{lan.host(1)}').st_ino}]" in out
    assert "eth0" in ip_br_links(out) and "vde0" not in ip_br_links(out)

    # After the last logout the daemon removes the namespace (after_logout: remove).
    logout(alice_long)
    logout(bob_long)
    wait_gone(f"/run/netns/{h1.netns(alice)}", timeout=15)
    wait_gone(f"/run/netns/{h1.netns(bob)}", timeout=15)
    assert h1.ask(f"status {alice}").status == "error"
    assert os.path.exists(f"/run/netns/{h2.netns(alice)}"), "h2 keeps its namespaces (after_logout: keep)"
