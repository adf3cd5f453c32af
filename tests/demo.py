#!/usr/bin/env python3
"""make demo: a vxvdex cluster on one machine, and who reaches whom.

Three simulated hosts on one LAN, each running its own vxvdexd. Three demo
users, created for the run: alice and bob share group A, carol is in group
B. Sessions are opened through the daemons (as pam_vxvdex.so does at login)
on several hosts; an administrator joins VLAN A with Debian's
`vde_plug vxvde:///grp=A`. Every namespace then pings every other, and the
reachability matrix is printed: same group reachable across hosts, the other
group isolated. Everything created is removed at the end.
"""

from __future__ import annotations

import os
import pwd
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster import Cluster
from lan import leftovers, sh

SESSIONS = [("alice", "A", 1), ("alice", "A", 2), ("bob", "A", 3), ("carol", "B", 1), ("carol", "B", 3)]


def step(text: str) -> None:
    print(f"-- {text}", flush=True)


def reaches(c: Cluster, ns: str, target: str) -> bool:
    res = c.lan.run(ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", target, check=False)
    return res.returncode == 0


def build(c: Cluster) -> list[tuple[str, str, str, str]]:
    """Open the sessions; return (label, group, namespace, address) per node."""
    gids = {g: c.group(f"vxd{g.lower()}{c.tag}") for g in ("A", "B")}
    users: dict[str, str] = {}
    for name, grp, _host in SESSIONS:
        if name not in users:
            users[name] = c.user(name, f"vxd{grp.lower()}{c.tag}")
    step("users: " + ", ".join(f"{users[n]} (group {g}, gid {gids[g]})" for n, g, _h in SESSIONS[::2]))
    c.start_all()
    step("vxvdexd running on h1, h2, h3 (each with its own run directory)")
    nodes = []
    for i, (name, grp, host) in enumerate(SESSIONS, start=1):
        t0 = time.monotonic()
        ns = c.open(host, users[name], "demo")
        addr = f"198.51.100.{i}"
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "vde0")
        step(f"{name}@h{host}: session opened in {1000 * (time.monotonic() - t0):.0f} ms -> "
             f"netns {ns}, vde0 {addr} on the VLAN of gid {gids[grp]}")
        nodes.append((f"{name}@h{host}", grp, ns, addr))
    admin_ns, _ = c.lan.leaf(2, "admin", ["vde_plug", f"vxvde:///grp={gids['A']}", "tap://adm0"],
                             ["198.51.100.100/24"])
    step(f"admin@h2: vde_plug vxvde:///grp={gids['A']} tap://adm0 -> 198.51.100.100")
    nodes.append(("admin@h2", "A", admin_ns, "198.51.100.100"))
    return nodes


def matrix(c: Cluster, nodes: list[tuple[str, str, str, str]]) -> bool:
    pairs = [(a, b) for a in nodes for b in nodes if a is not b]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(pairs, pool.map(lambda p: reaches(c, p[0][2], p[1][3]), pairs), strict=True))
    width = max(len(n[0]) for n in nodes) + 2
    print("\nreachability (ping over vde0; rows reach columns):\n")
    print(" " * width + "".join(f"{n[0]:>{width}}" for n in nodes))
    ok = True
    for a in nodes:
        cells = []
        for b in nodes:
            if a is b:
                cells.append("-")
                continue
            got, want = results[(a, b)], a[1] == b[1]
            ok &= got == want
            cells.append(("yes" if got else "no") + ("" if got == want else " (!)"))
        print(f"{a[0] + ' [' + a[1] + ']':<{width}}" + "".join(f"{x:>{width}}" for x in cells))
    return ok


def main() -> int:
    if os.geteuid() != 0:
        print("make demo: run as root (it builds network namespaces and users)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    step("building a LAN of 3 simulated hosts (network namespaces on a bridge)")
    with Cluster(hosts=3) as c:
        nodes = build(c)
        ok = matrix(c, nodes)
        step("tearing down: daemons, endpoints, namespaces, users")
    left = leftovers(c.lan.prefix) + [u for u in ("alice", "bob", "carol") if _exists(u + c.tag)]
    print(f"\n{'as expected' if ok else 'UNEXPECTED'}: group A (alice, bob, admin) reach each other "
          f"on any host; group B (carol) reaches only itself; done in {time.monotonic() - t0:.1f} s, "
          + (f"LEFT BEHIND: {left}" if left else "nothing left behind."))
    return 0 if ok and not left else 1


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
