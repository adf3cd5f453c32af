"""Helpers of the PAM module tests: test accounts, PAM stacks, daemons on a simulated LAN."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lan import Lan, sh, tool, wait_for


@dataclass
class Accounts:
    token: str
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def group(self, tag: str) -> str:
        name = f"vxg{tag}{self.token}"
        sh("groupadd", name)
        self.groups.append(name)
        return name

    def user(self, tag: str, group: str, extra: tuple[str, ...] = ()) -> str:
        name = f"vx{tag}{self.token}"
        sh("useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh",
           "--gid", group, *(("--groups", ",".join(extra)) if extra else ()), name)
        self.users.append(name)
        return name

    def remove(self) -> list[str]:
        """Remove everything; return the names of processes the users still had (a bug)."""
        stray = []
        for name in self.users:
            uid = pwd.getpwnam(name).pw_uid
            res = sh("pgrep", "-u", str(uid), check=False)
            for pid in res.stdout.split():
                stray.append(f"{name}:{pid}")
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sh("userdel", name, check=False)
        for name in self.groups:
            sh("groupdel", name, check=False)
        return stray


def stack(module: Path, options: str, session_first: str = "session required pam_permit.so") -> str:
    """A test stack: auth and account always succeed, the session runs pam_vxvdex."""
    return (f"auth sufficient pam_permit.so\naccount sufficient pam_permit.so\n"
            f"{session_first}\nsession required {module} {options}\n")


# ---- the simulated LAN, its daemons, the users' namespaces -------------------------


@dataclass
class Daemon:
    lan: Lan
    host: int
    run_dir: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.run_dir / "control"

    def netns(self, user: str) -> str:
        return f"{self.lan.prefix}-h{self.host}-{user}"

    def netns_inode(self, user: str) -> int:
        return os.stat(f"/run/netns/{self.netns(user)}").st_ino

    def start(self) -> Daemon:
        self.proc = self.lan.spawn(self.lan.host(self.host), tool("vxvdexd"), "--config",
                                   str(self.run_dir / "vxvdex.yaml"), log=self.log, host_mounts=True)
        wait_for(lambda: self.answers() or self.proc.poll() is not None, timeout=20,
                 what=f"vxvdexd on h{self.host}")
        assert self.proc.poll() is None, f"vxvdexd exited: {self.log.read_text()[-2000:]}"
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.lan.stop(self.proc)
            self.proc = None
            # The port guard outlives its daemon by design (a kernel-held bind program).
            self.lan.run(self.lan.host(self.host), tool("vxvdexd"), "--remove-guard", check=False)

    def answers(self) -> bool:
        from vxvdex import control
        try:
            return control.ask(self.run_dir, "version", timeout=2).status == "ok"
        except OSError:
            return False

    def ask(self, request: str) -> object:
        from vxvdex import control
        answer = control.ask(self.run_dir, request)
        if answer.fd is not None:
            os.close(answer.fd)
        return answer


def wait_gone(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} still exists after {timeout}s"
        time.sleep(0.1)


def ip_br_links(text: str) -> set[str]:
    """Interface names in the output of `ip -br link` (among other output)."""
    found = (re.match(r"^([^\s@]+)(@\S+)?\s+(UP|DOWN|UNKNOWN|LOWERLAYERDOWN)\s", line.strip("\r"))
             for line in text.splitlines())
    return {m.group(1) for m in found if m}
