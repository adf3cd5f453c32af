"""Looking at what vxvdexd provisioned, from the outside: namespaces, links,
endpoint processes, status answers; and asking the daemon as someone else."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

from cluster import ENDPOINT_USER, Cluster
from lan import NETNS_DIR, REPO, sh, wait_for

ASK = str(REPO / "tests" / "netns" / "ask.py")


def netns_names() -> set[str]:
    """What `ip netns list` shows."""
    return {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()}


def pinned(name: str) -> bool:
    """/run/netns/NAME is a mounted namespace (not a leftover plain file)."""
    try:
        return os.stat(NETNS_DIR / name).st_dev != os.stat(NETNS_DIR).st_dev
    except OSError:
        return False


def ns_inode(name: str) -> int:
    return os.stat(NETNS_DIR / name).st_ino


def proc_ns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def link(ns: str, ifname: str) -> dict | None:
    """`ip -j link show` of one interface (flags, mtu, address, ...), None if absent."""
    res = sh("ip", "-n", ns, "-j", "link", "show", "dev", ifname, check=False)
    if res.returncode != 0:
        return None
    found: list[dict] = json.loads(res.stdout)
    return found[0]


def is_up(ns: str, ifname: str) -> bool:
    info = link(ns, ifname)
    return info is not None and "UP" in info["flags"]


def links(ns: str) -> list[str]:
    return [entry["ifname"] for entry in json.loads(sh("ip", "-n", ns, "-j", "link", "show").stdout)]


def add_addr(ns: str, cidr: str, ifname: str = "vde0") -> None:
    sh("ip", "-n", ns, "addr", "replace", cidr, "dev", ifname)


def two_daemons_with_users(c: Cluster, *managed: str) -> tuple[list[str], str]:
    """Daemons on h1 and h2; a group vxa<tag> with the managed users `managed`
    and an unmanaged member. Returns (the managed users' names, the other's)."""
    group = f"vxa{c.tag}"
    c.group(group)
    users = [c.user(name, group) for name in managed]
    dave = c.user("dave", group, managed=False)
    c.start(1)
    c.start(2)
    return users, dave


def status(c: Cluster, host: int, user: str) -> dict:
    answer = c.ask(host, f"status {user}")
    assert answer.status == "ok", (answer, c.log(host)[-2000:])
    result: dict = answer.json()
    return result


def port(c: Cluster, host: int, user: str, ifname: str = "vde0") -> dict:
    (found,) = [p for p in status(c, host, user)["ports"] if p["ifname"] == ifname]
    return found


def endpoint_pids(c: Cluster, host: int) -> set[int]:
    """Processes of the endpoint user in host's network namespace: the daemon's
    endpoints (the zygote runs as root), whoever started them."""
    host_ino = ns_inode(c.lan.host(host))
    ep_uid = pwd.getpwnam(ENDPOINT_USER).pw_uid
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(entry.path).st_uid == ep_uid and proc_ns_inode(int(entry.name)) == host_ino \
                        and _state(int(entry.name)) not in ("Z", "X"):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    try:
        return _state(pid) not in ("Z", "X")
    except OSError:
        return False


def ping_once(c: Cluster, ns: str, target: str, wait: float = 0.3) -> bool:
    return c.lan.run(ns, "ping", "-c1", "-W", str(wait), target, check=False).returncode == 0


def sleeper(c: Cluster, ns: str) -> subprocess.Popen:
    """A process inside namespace ns (ended by the cluster at the latest)."""
    proc = c.lan.spawn(ns, "sleep", "600")
    wait_for(lambda: proc_ns_inode(proc.pid) == ns_inode(ns), what=f"sleep to enter {ns}")
    return proc


def raw_ask(run_dir: Path, data: bytes, timeout: float = 10) -> bytes:
    """Send one raw message on the control socket, return the raw answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(timeout)
        sock.connect(str(run_dir / "control"))
        sock.send(data)
        return sock.recv(65536)


def as_user(user: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run cmd as user (real and effective uid and gids, no privileges)."""
    return sh("setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups",
              *cmd, check=False, timeout=timeout)


def ask_as(user: str, run_dir: Path, request: str) -> dict:
    """One control request sent by `user`: {"answer": text, "fd_inode": int | None}."""
    res = as_user(user, sys.executable, ASK, str(run_dir / "control"), request)
    assert res.returncode == 0, res.stderr
    result: dict = json.loads(res.stdout)
    return result
