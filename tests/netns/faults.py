"""Injecting faults into a running vxvdexd cluster (issue 12): killing,
stopping and finding its processes, rewriting its state, breaking the uplink."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster import Cluster
from lan import sh, wait_for
from provisioned import alive, port

# The cgroup v2 hierarchy (on its own, or beside v1 as "unified"), if any.
FREEZER = next((p for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
                if (p / "cgroup.controllers").exists()), None)


def managed_users(c: Cluster, count: int, base: str = "u") -> list[str]:
    """`count` managed users on one VLAN (their own primary group)."""
    group = f"vxa{c.tag}"
    c.group(group)
    return [c.user(f"{base}{i}", group) for i in range(count)]


def children(pid: int) -> list[int]:
    """pid's children, forked by any of its threads (each task lists its own)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def zygote_pid(c: Cluster, host: int) -> int:
    """The daemon's fork server (a child of the daemon running vxvdex.daemon.zygote)."""
    found = [p for p in children(c.daemons[host].pid) if "vxvdex.daemon.zygote" in cmdline(p)]
    assert len(found) == 1, (found, c.log(host)[-1000:])
    return found[0]


def kill_daemon(c: Cluster, host: int) -> None:
    """SIGKILL host's daemon (its endpoints keep running)."""
    c.lan.stop(c.daemons[host], signal.SIGKILL)


def state_path(c: Cluster, host: int) -> Path:
    return c.run_dir(host) / "state.json"


def read_state(c: Cluster, host: int) -> dict:
    state: dict = json.loads(state_path(c, host).read_text())
    return state


def saved_state(c: Cluster, host: int, name: str) -> dict:
    """state.json once it holds namespace `name` (the collector saves it within seconds)."""
    state: dict = wait_for(lambda: (st := read_state(c, host)).get(name) and st, timeout=5,
                           what=f"state.json to hold {name}")
    return state


def endpoint_of(c: Cluster, host: int, user: str) -> int:
    """The pid of user's live endpoint on host, as status reports it."""
    pid: int = wait_for(lambda: (p := port(c, host, user))["endpoint_alive"] and p["endpoint_pid"],
                        timeout=5, what=f"an endpoint of {user}")
    return pid


def stop_process(pid: int) -> None:
    """SIGSTOP (a hung process); SIGKILL at the end of the test still ends it."""
    os.kill(pid, signal.SIGSTOP)


@contextmanager
def frozen(pid: int, tag: str) -> Iterator[None]:
    """Freeze pid in a cgroup (v2) of its own: a hang that the process state
    does not show (it still reads 'S'), only the missing heartbeat; a frozen
    process can still be killed. Thawed and removed afterwards."""
    assert FREEZER is not None
    group = FREEZER / f"vxvdex-test-{tag}"
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(str(pid))
        (group / "cgroup.freeze").write_text("1")
        yield
    finally:
        (group / "cgroup.freeze").write_text("0")
        for left in (group / "cgroup.procs").read_text().split():
            (FREEZER / "cgroup.procs").write_text(left)
        group.rmdir()


def gone(pid: int) -> bool:
    return not alive(pid)


def recreate_uplink(c: Cluster, host: int) -> None:
    """Delete host's uplink veth and make it again: same name, addresses and route."""
    c.lan.ip(c.lan.host(host), "link", "del", "eth0")
    c.lan.uplink(host)


def flush_neighbours(*namespaces: str) -> None:
    for ns in namespaces:
        sh("ip", "-n", ns, "neigh", "flush", "all", check=False)
