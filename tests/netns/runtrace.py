"""What a test Cluster owned, noted just before it closes, so that a test can
check afterwards that every user, group, namespace and process of the run is
gone (also when the test failed)."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cluster import ENDPOINT_USER, Cluster
from lan import ETC_NETNS, NETNS_DIR, leftovers

from vxvdex.daemon import netns


def start_time(pid: int) -> str | None:
    """The start time of a live (not zombie) process, None if there is none:
    with the pid it names one process, even if the pid is reused later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def processes_in(prefix: str) -> dict[int, str]:
    """Every process whose network namespace is pinned under /run/netns/PREFIX*."""
    inodes = set()
    for name in leftovers(prefix):
        try:
            inodes.add(os.stat(NETNS_DIR / name).st_ino)
        except OSError:
            continue
    found = {}
    for pid, ino in netns.process_namespaces():
        started = start_time(pid) if ino in inodes else None
        if started is not None:
            found[pid] = started
    return found


@dataclass
class RunTrace:
    prefix: str
    users: list[str]
    groups: list[str]
    procs: dict[int, str]
    directory: Path

    @classmethod
    def of(cls, c: Cluster) -> RunTrace:
        procs = processes_in(c.lan.prefix + "-")
        procs.update({p.pid: s for p in c.daemons.values() if (s := start_time(p.pid)) is not None})
        return cls(c.lan.prefix, [u for u in c.made_users if u != ENDPOINT_USER], list(c.made_groups),
                   procs, c.dir)

    def left(self) -> list[str]:
        """What of the run still exists (nothing, after Cluster.close())."""
        found = [f"namespace {n}" for n in leftovers(self.prefix + "-")]
        found += [f"directory {p}" for p in ETC_NETNS.glob(self.prefix + "-*")]
        found += [f"process {pid}" for pid, started in self.procs.items() if start_time(pid) == started]
        found += [f"user {u}" for u in self.users if _known(pwd.getpwnam, u)]
        found += [f"group {g}" for g in self.groups if _known(grp.getgrnam, g)]
        if self.directory.exists():
            found.append(f"directory {self.directory}")
        return found


def _known(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


@contextmanager
def running_cluster(hosts: int = 3, config: str = "",
                    traces: list[RunTrace] | None = None) -> Iterator[Cluster]:
    """A Cluster closed at the end; what it owned is checked to be gone (here,
    or by the caller if it passes `traces`)."""
    c = Cluster(hosts=hosts, config=config)
    try:
        yield c
    finally:
        trace = RunTrace.of(c)
        c.close()
        if traces is None:
            assert trace.left() == [], "left behind by the run"
        else:
            traces.append(trace)
