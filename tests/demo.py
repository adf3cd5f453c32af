#!/usr/bin/env python3
"""make demo: a vxvdex cluster on one machine, and who reaches whom.

Three simulated hosts on one LAN, each running its own vxvdexd, and an
"outside" namespace on the LAN (a server beyond the cluster). Three demo
users, created for the run: alice and bob share group A, carol is in group
B. Both groups are served VLANs (`vlans:`): A by a gateway on h1 with
egress nat, B by a gateway on h2 with egress none. Sessions are opened
through the daemons (as pam_vxvdex.so does at login) on several hosts; the
demo assigns no address: each namespace gets its own by DHCP from its VLAN's
gateway. Every namespace then pings every other (by name in its own group,
by address across groups) and the outside, and the reachability matrix is
printed: group A reaches itself and, through NAT, the outside; group B
reaches only itself. Everything created is removed at the end.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster import Cluster
from lan import leftovers, sh, wait_for

SESSIONS = [("alice", "A", 1), ("alice", "A", 2), ("bob", "A", 3), ("carol", "B", 1), ("carol", "B", 3)]
SUBNETS = {"A": "192.0.2.128/26", "B": "192.0.2.192/26"}
SERVERS = {"A": (1, "nat"), "B": (2, "none")}
OUTSIDE = "192.0.2.100"  # on the LAN, beyond the cluster: reached only through a gateway's NAT
ETC_NETNS = Path("/etc/netns")


@dataclass
class Node:
    label: str
    group: str
    ns: str
    addr: str
    name: str   # its DNS name on its VLAN


def step(text: str) -> None:
    print(f"-- {text}", flush=True)


def reaches(c: Cluster, ns: str, target: str) -> bool:
    res = c.lan.run(ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", target, check=False)
    return res.returncode == 0


def ipv4(ns: str) -> str | None:
    links = json.loads(sh("ip", "-n", ns, "-j", "-4", "addr", "show", "dev", "vde0").stdout)
    found = [a["local"] for link in links for a in link.get("addr_info", [])]
    return found[0] if found else None


def outside(c: Cluster) -> str:
    """A namespace on the LAN's bridge with OUTSIDE: a server beyond the cluster."""
    ns = c.lan.add_ns("outside")
    c.lan.ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "pout", "netns", c.lan.bridge_ns)
    c.lan.ip(c.lan.bridge_ns, "link", "set", "pout", "master", "br0", "up")
    c.lan.ip(ns, "link", "set", "eth0", "up")
    c.lan.ip(ns, "addr", "add", f"{OUTSIDE}/24", "dev", "eth0")
    return ns


def build(c: Cluster) -> list[Node]:
    """Serve the VLANs, open the sessions; return the nodes with their addresses."""
    groups = {g: f"vxd{g.lower()}{c.tag}" for g in ("A", "B")}
    gids = {g: c.group(name) for g, name in groups.items()}
    users: dict[str, str] = {}
    for name, grp, _host in SESSIONS:
        if name not in users:
            users[name] = c.user(name, groups[grp])
    step("users: " + ", ".join(f"{users[n]} (group {g}, gid {gids[g]})" for n, g, _h in SESSIONS[::2]))
    c.extra_config = "network:\n  uplink: eth0\nhosts: [h1, h2, h3]\nvlans:\n" + "".join(
        f"  {groups[g]}: {{subnet: {SUBNETS[g]}, server: h{SERVERS[g][0]}, egress: {SERVERS[g][1]}}}\n"
        for g in ("A", "B"))
    step(f"outside: {outside(c)} at {OUTSIDE}, on the LAN")
    c.start_all()
    step("vxvdexd running on h1, h2, h3; gateways: " + ", ".join(
        f"VLAN {g} on h{SERVERS[g][0]} ({SUBNETS[g]}, egress {SERVERS[g][1]})" for g in ("A", "B")))
    opened = []
    for name, grp, host in SESSIONS:
        t0 = time.monotonic()
        ns = c.open(host, users[name], "demo")
        opened.append((name, grp, host, ns, t0, time.monotonic() - t0))
    nodes = []
    for name, grp, host, ns, t0, took in opened:
        addr = wait_for(lambda ns=ns: ipv4(ns), timeout=30, what=f"an address by DHCP in {ns}")
        dns = f"{users[name]}-h{host}.{groups[grp]}.vx"
        step(f"{name}@h{host}: session opened in {1000 * took:.0f} ms -> netns {ns}, vde0 {addr} "
             f"by DHCP {1000 * (time.monotonic() - t0):.0f} ms after the login, name {dns}")
        nodes.append(Node(f"{name}@h{host}", grp, ns, addr, dns))
    return nodes


def matrix(c: Cluster, nodes: list[Node]) -> bool:
    """Ping every node (by name in its own group, by address across groups) and the outside."""
    columns = [n.label for n in nodes] + ["outside"]
    targets = {n.label: n for n in nodes}
    pairs = [(a, b) for a in nodes for b in columns if a.label != b]

    def target(a: Node, b: str) -> str:
        if b == "outside":
            return OUTSIDE
        return targets[b].name if targets[b].group == a.group else targets[b].addr

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = pool.map(lambda p: reaches(c, p[0].ns, target(*p)), pairs)
        results = dict(zip([(a.label, b) for a, b in pairs], found, strict=True))
    width = max(len(x) for x in columns) + 6
    print("\nreachability (ping over vde0, by name within a group; rows reach columns):\n")
    print(" " * width + "".join(f"{x:>{width}}" for x in columns))
    ok = True
    for a in nodes:
        cells = []
        for b in columns:
            if b == a.label:
                cells.append("-")
                continue
            got = results[(a.label, b)]
            want = a.group == "A" if b == "outside" else targets[b].group == a.group
            ok &= got == want
            cells.append(("yes" if got else "no") + ("" if got == want else " (!)"))
        print(f"{a.label + ' [' + a.group + ']':<{width}}" + "".join(f"{x:>{width}}" for x in cells))
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
        step("tearing down: daemons, gateways, endpoints, namespaces, users")
    left = leftovers(c.lan.prefix) + [u for u in ("alice", "bob", "carol") if _exists(u + c.tag)]
    left += [str(p) for p in ETC_NETNS.glob(f"{c.lan.prefix}*")]
    print(f"\n{'as expected' if ok else 'UNEXPECTED'}: group A (alice, bob) got addresses and names by "
          "DHCP, reach each other by name on any host and the outside through NAT; group B (carol) "
          f"reaches only itself; done in {time.monotonic() - t0:.1f} s, "
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
