"""A simulated LAN on one machine, for tests, the demo and the benchmarks.

    host h1 (netns)        host h2 (netns)        host h3 (netns)
    eth0 192.0.2.1         eth0 192.0.2.2         eth0 192.0.2.3
         2001:db8::1            2001:db8::2            2001:db8::3
      |  veth                 |                      |
    --p1------------------- br0 -------------------p3--   "lan" (netns of its own)

Each host is a network namespace with a multicast route; the bridge lives in
a namespace of its own, never in the root namespace (something there answers
ARP for foreign addresses). Users' namespaces ("leaves") hang off hosts
through taps that endpoint processes create. All names carry a per-run
prefix; `close()` ends every process started here (by PID) and removes every
namespace, and is safe to call twice.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from vxvdex.services import resolv

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")


def sh(*cmd: str, check: bool = True, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with the exact command line and output."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and res.returncode != 0:
        raise RuntimeError(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}{res.stderr}")
    return res


def wait_for(predicate, timeout: float = 5.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll predicate until it returns something true; raise after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Lan:
    """N hosts on one bridge, with helpers to start endpoints and leaves."""

    def __init__(self, hosts: int = 3, mtu: int = 1500, prefix: str | None = None) -> None:
        self.prefix = prefix or f"vxt{secrets.token_hex(3)}"
        self.count = hosts
        self.mtu = mtu
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ---- names -------------------------------------------------------------
    def host(self, i: int) -> str:
        return f"{self.prefix}-h{i}"

    @property
    def bridge_ns(self) -> str:
        return f"{self.prefix}-lan"

    @staticmethod
    def addr4(i: int) -> str:
        return f"192.0.2.{i}"

    @staticmethod
    def addr6(i: int) -> str:
        return f"2001:db8::{i}"

    # ---- building ----------------------------------------------------------
    def add_ns(self, name: str) -> str:
        full = name if name.startswith(self.prefix) else f"{self.prefix}-{name}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        self.ip(full, "link", "set", "lo", "up")
        return full

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "-n", ns, *args, check=check)

    def _build(self) -> None:
        br = self.add_ns(self.bridge_ns)
        self.ip(br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        self.ip(br, "link", "set", "br0", "mtu", str(self.mtu), "up")
        for i in range(1, self.count + 1):
            self.add_ns(self.host(i))
            self.uplink(i)

    def uplink(self, i: int) -> None:
        """Host i's eth0 on the bridge, with its addresses and multicast route
        (also to make it again after a test deleted it)."""
        h, br = self.host(i), self.bridge_ns
        self.ip(h, "link", "add", "eth0", "mtu", str(self.mtu), "type", "veth",
                "peer", "name", f"p{i}", "mtu", str(self.mtu), "netns", br)
        self.ip(br, "link", "set", f"p{i}", "master", "br0", "up")
        self.ip(h, "link", "set", "eth0", "up")
        self.ip(h, "addr", "add", f"{self.addr4(i)}/24", "dev", "eth0")
        self.ip(h, "addr", "add", f"{self.addr6(i)}/64", "dev", "eth0", "nodad")
        self.ip(h, "route", "add", "224.0.0.0/4", "dev", "eth0")

    # ---- processes ---------------------------------------------------------
    def spawn(self, ns: str, *cmd: str, log: Path | None = None, capture: bool = False,
              host_mounts: bool = False) -> subprocess.Popen:
        """Start cmd inside ns; it is ended (by PID) when the LAN closes.
        Its output goes to `log`, or to a text pipe (proc.stdout) with capture.
        host_mounts: stay in the machine's mount namespace (nsenter instead of
        `ip netns exec`), as a daemon that pins namespaces must."""
        out = subprocess.PIPE if capture else open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        enter = ["nsenter", f"--net={NETNS_DIR / ns}", "--"] if host_mounts else ["ip", "netns", "exec", ns]
        proc = subprocess.Popen([*enter, *cmd], stdout=out, text=capture,
                                stderr=subprocess.STDOUT if log else None, start_new_session=True)
        if log:
            out.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> int:
        """Signal a process we started and reap it; SIGKILL if it lingers."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode

    # ---- endpoints ---------------------------------------------------------
    def leaf(self, host: int, name: str, cmd: Sequence[str], addrs: Sequence[str],
             mtu: int = 1450, log: Path | None = None) -> tuple[str, subprocess.Popen]:
        """Start an endpoint `cmd` (its last argument tap://TAP) on host `host`,
        wait for the tap it creates, move the tap into a new namespace `name`
        (a user's namespace, in miniature) and give it addresses."""
        tap = cmd[-1].removeprefix("tap://")
        ns = self.add_ns(name)
        proc = self.spawn(self.host(host), *cmd, log=log)
        # Ends as soon as the tap exists or the command exits; the bound only
        # catches a hung command. A Python start in a TCG guest (the kernel
        # tier runs these tests there) on a loaded host took more than 5 s.
        wait_for(lambda: proc.poll() is not None or self.ip(self.host(host), "link", "show", tap,
                                                              check=False).returncode == 0,
                 timeout=60, what=f"{cmd[0]} to create tap {tap}")
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}"
                               + (f": {log.read_text()}" if log else ""))
        self.ip(self.host(host), "link", "set", tap, "netns", ns)
        self.ip(ns, "link", "set", tap, "mtu", str(mtu), "up")
        for addr in addrs:
            self.ip(ns, "addr", "add", addr, "dev", tap, *(("nodad",) if ":" in addr else ()))
        return ns, proc

    # ---- teardown ----------------------------------------------------------
    def close(self) -> None:
        """End our processes, remove our namespaces. Idempotent."""
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.procs.clear()
        # Ours, and those that daemons of this run named with our prefix.
        for ns in [*reversed(self.namespaces), *leftovers(self.prefix + "-")]:
            _kill_ns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
            # what a daemon wrote for it (a served VLAN's resolv.conf): daemons
            # are ended, not asked to remove their namespaces
            resolv.remove(ns)
        self.namespaces.clear()

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_ns_pids(ns: str) -> None:
    """End processes still inside one of our namespaces (started by our tests)."""
    res = sh("ip", "netns", "pids", ns, check=False)
    for pid in res.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def leftovers(prefix: str) -> list[str]:
    """Namespaces whose name starts with prefix (should be none after a run)."""
    if not NETNS_DIR.exists():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def tool(name: str) -> str:
    """The venv's console script if installed there, else one on PATH."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)
