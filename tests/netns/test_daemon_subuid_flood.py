"""The control socket's per-uid cap against one user with many uids: her
subordinate uids (/etc/subuid, mapped with the setuid newuidmap) are
distinct uids to SO_PEERCRED. Each holds the per-uid maximum of idle
connections; other users' requests must still be answered.

    h1: vxvdexd; mallory (not managed) floods from 100 uids; bob asks
"""

from __future__ import annotations

import os
import pwd
import select
import signal
import sys

from cluster import Cluster
from lan import REPO
from provisioned import as_user

from vxvdex.daemon import ctlserver

FLOOD = str(REPO / "tests" / "netns" / "subuid_flood.py")
ASK = str(REPO / "tests" / "netns" / "ask.py")
UIDS = 100
TRIES = 10


def subuid_start(user: str) -> int:
    for line in open("/etc/subuid"):  # noqa: SIM115 - a short read
        name, start, count = line.strip().split(":")
        if name == user and int(count) >= UIDS - 1:
            return int(start)
    raise AssertionError(f"{user} has no subordinate uid range")


def test_subordinate_uids_do_not_multiply_the_per_uid_cap(cluster: Cluster) -> None:
    go = f"vxo{cluster.tag}"
    cluster.group(go)
    mallory = cluster.user("mallory", go, managed=False)
    bob = cluster.user("bob", go, managed=False)
    cluster.start(1)
    control = str(cluster.run_dir(1) / "control")
    uid = pwd.getpwnam(mallory).pw_uid
    subuids = ("unshare", "--user", "--map-user=0", f"--map-users={subuid_start(mallory)},1,{UIDS - 1}")
    flood = cluster.lan.spawn(cluster.lan.host(1), "setpriv", f"--reuid={uid}",
                              f"--regid={pwd.getpwnam(mallory).pw_gid}", "--init-groups", *subuids,
                              sys.executable, FLOOD, control, str(UIDS), str(ctlserver.PER_UID), capture=True)
    try:
        assert flood.stdout is not None
        assert select.select([flood.stdout], [], [], 60)[0], "the flood did not start"
        assert flood.stdout.readline().strip() == "ready"
        asked = [as_user(bob, sys.executable, ASK, control, "status") for _ in range(TRIES)]
        answered = sum(1 for res in asked if '"answer": "unmanaged' in res.stdout)
    finally:
        os.killpg(flood.pid, signal.SIGKILL)
        flood.wait()
    assert answered == TRIES, f"bob's requests answered: {answered} of {TRIES}: {asked}"
