"""Daemons and users on a simulated LAN: a whole vxvdex cluster on one machine.

A Cluster owns, for one run: a Lan, one vxvdexd per host (each with its own
run directory and namespace names), the endpoint system user and the managed
group if they were missing, and test users and groups with names unique to
the run. close() removes all of it (also after a failure), in reverse order.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from lan import Lan, sh, tool, wait_for

from vxvdex import control

ENDPOINT_USER = "vxvdex-endpoint"


def ensure_endpoint_user() -> bool:
    """Create the endpoint system user if it is missing (as the vxvdex package
    does); True if this call made it, and the caller must remove it."""
    try:
        pwd.getpwnam(ENDPOINT_USER)
    except KeyError:
        sh("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
           "--shell", "/usr/sbin/nologin", ENDPOINT_USER)
        return True
    return False


class Cluster:
    def __init__(self, hosts: int = 3, config: str = "", lan: Lan | None = None) -> None:
        self.lan = lan or Lan(hosts=hosts)
        self.tag = secrets.token_hex(2)
        self.dir = Path(tempfile.mkdtemp(prefix=f"vxvdex-{self.lan.prefix}-"))
        self.dir.chmod(0o755)  # endpoints run as the endpoint user and write status here
        self.daemons: dict[int, subprocess.Popen] = {}
        self.made_users: list[str] = []
        self.made_groups: list[str] = []
        self.extra_config = config
        self.managed = f"vxm{self.tag}"
        try:
            self._ensure_endpoint_user()
            self.group(self.managed)
        except BaseException:
            self.close()
            raise

    # ---- users and groups ------------------------------------------------------
    def _ensure_endpoint_user(self) -> None:
        if ensure_endpoint_user():
            self.made_users.append(ENDPOINT_USER)

    def group(self, name: str) -> int:
        """Create group `name` for this run; return its gid."""
        sh("groupadd", name)
        self.made_groups.append(name)
        return grp.getgrnam(name).gr_gid

    def user(self, base: str, primary: str, managed: bool = True, extra: tuple[str, ...] = ()) -> str:
        """Create a user (name unique to the run) with primary group `primary`."""
        name = f"{base}{self.tag}"
        groups = ",".join([*((self.managed,) if managed else ()), *extra])
        sh("useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/bash",
           "-g", primary, *(("-G", groups) if groups else ()), name)
        self.made_users.append(name)
        return name

    # ---- daemons ---------------------------------------------------------------
    def run_dir(self, host: int) -> Path:
        return self.dir / f"h{host}"

    def netns_name(self, host: int, user: str) -> str:
        return f"{self.lan.prefix}-h{host}-{user}"

    def state_dir(self, host: int) -> Path:
        """Host's --state-dir (DHCP leases): never the machine's /var/lib/vxvdex."""
        return self.dir / f"h{host}-state"

    def config_text(self, host: int) -> str:
        return (f"managed_groups: [{self.managed}]\nrun_dir: {self.run_dir(host)}\n"
                f"netns_name: {self.lan.prefix}-h{host}-{{user}}\n{self.extra_config}")

    def start(self, host: int) -> subprocess.Popen:
        """Start (or restart) host's daemon and wait until it answers."""
        rd = self.run_dir(host)
        rd.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / f"h{host}.yaml"
        cfg.write_text(self.config_text(host))
        # Simulated hosts share one UTS name: each is told its own (h1, h2 ...).
        proc = self.lan.spawn(self.lan.host(host), tool("vxvdexd"), "--config", str(cfg),
                              "--host-name", f"h{host}", "--state-dir", str(self.state_dir(host)),
                              log=self.dir / f"vxvdexd-h{host}.log", host_mounts=True)
        self.daemons[host] = proc
        wait_for(lambda: proc.poll() is not None or self._answers(host), timeout=15,
                 what=f"vxvdexd on h{host}")
        if proc.poll() is not None:
            raise RuntimeError(f"vxvdexd on h{host} exited: {self.log(host)}")
        return proc

    def _answers(self, host: int) -> bool:
        try:
            return self.ask(host, "version").status == "ok"
        except control.DaemonUnavailable:
            return False

    def start_all(self) -> None:
        for i in range(1, self.lan.count + 1):
            self.start(i)

    def log(self, host: int) -> str:
        path = self.dir / f"vxvdexd-h{host}.log"
        return path.read_text() if path.exists() else ""

    def session_cmd(self, host: int, *args: str) -> list[str]:
        return [tool("vxvdex-session"), "--run-dir", str(self.run_dir(host)), *args]

    def session(self, host: int, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        """Run vxvdex-session against host's daemon (as root)."""
        return sh(*self.session_cmd(host, *args), check=check)

    def ask(self, host: int, request: str) -> control.Answer:
        """One control request to host's daemon, as root; a passed fd is closed."""
        answer = control.ask(self.run_dir(host), request)
        if answer.fd is not None:
            os.close(answer.fd)
        return answer

    def open(self, host: int, user: str, session: str = "s1") -> str:
        """Open a session of user on host through the daemon; return the netns name."""
        answer = self.ask(host, f"open {user} {session}")
        if answer.status != "ok":
            raise RuntimeError(f"open {user} on h{host}: {answer.status} {answer.code} {answer.text}")
        return answer.text

    # ---- teardown --------------------------------------------------------------
    def close(self) -> None:
        for host, proc in self.daemons.items():
            self.lan.stop(proc)
            # The port guard outlives its daemon by design (a kernel-held bind program).
            self.lan.run(self.lan.host(host), tool("vxvdexd"), "--remove-guard", check=False)
        self.daemons.clear()
        self.lan.close()  # ends endpoints (they live in the host namespaces)
        for user in reversed(self.made_users):
            sh("userdel", user, check=False)
        for group in reversed(self.made_groups):
            sh("groupdel", group, check=False)
        self.made_users.clear()
        self.made_groups.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
