"""Helpers of the VLAN services tests (busybox: udhcpc, nslookup; the udhcpc
package of APT_PACKAGES brings it): served VLANs on a Cluster, users'
addresses (from the DHCP client vxvdexd runs in their namespaces), leaves
on a VLAN with a DHCP client the test runs itself, a resolver, what the
gateway says.

The test's own client is busybox's udhcpc (a maintained client, not ours),
run in leaves (`vde_plug` taps, which vxvdexd does not serve); its script
only puts the address it obtained on the tap.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cluster import Cluster
from lan import sh, wait_for
from runtrace import running_cluster

from vxvdex.daemon import netns

# Documentation addresses only: two /26 of 192.0.2.0/24 (the hosts' own
# underlay addresses are in other namespaces, so they never meet).
SUBNET_A, SUBNET_B = "192.0.2.128/26", "192.0.2.192/26"
SCRIPT = """#!/bin/sh
case "$1" in
    bound|renew)
        ip addr replace "$ip/$mask" dev "$interface"
        [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface" ;;
    deconfig) ip -4 addr flush dev "$interface" ;;
esac
"""


def vlans_config(group_a: str, group_b: str, egress_a: str = "none") -> str:
    """A served by h1, B by h2; both with the ULA prefix derived from the gid."""
    return (f"hosts: [h1, h2, h3]\nvlans:\n"
            f"  {group_a}: {{subnet: {SUBNET_A}, server: h1, egress: {egress_a}}}\n"
            f"  {group_b}: {{subnet: {SUBNET_B}, server: h2}}\n")


@dataclass
class World:
    """A cluster of three hosts serving VLAN A (on h1) and VLAN B (on h2)."""

    c: Cluster
    group_a: str
    group_b: str
    gid_a: int
    gid_b: int

    def gw_ns(self, host: int, gid: int) -> str:
        return f"{self.c.lan.prefix}-h{host}-gw-{gid}"

    def login(self, host: int, base: str, group: str) -> tuple[str, str]:
        """A new user of group, logged in on host: (user, namespace)."""
        user = self.c.user(base, group)
        return user, self.c.open(host, user)


@contextmanager
def vlan_world(egress_a: str = "none", extra: str = "") -> Iterator[World]:
    """The World, its daemons started; everything removed (and checked) after."""
    with running_cluster(hosts=3) as c:
        group_a, group_b = f"vxa{c.tag}", f"vxb{c.tag}"
        gid_a, gid_b = c.group(group_a), c.group(group_b)
        c.extra_config = extra + vlans_config(group_a, group_b, egress_a)
        yield World(c, group_a, group_b, gid_a, gid_b)


def script(directory: Path) -> Path:
    path = directory / "udhcpc.script"
    if not path.exists():
        path.write_text(SCRIPT)
        path.chmod(0o755)
    return path


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["nsenter", f"--net={netns.path_of(ns)}", "--", *cmd]


def dhcp_cmd(c: Cluster, ns: str, hostname: str, tries: int = 10, ifname: str = "vde0") -> list[str]:
    """udhcpc in ns: up to `tries` DISCOVERs a second apart, then exit (lease or not)."""
    return in_ns(ns, "busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", str(tries), "-T", "1",
                 "-A", "1", "-x", f"hostname:{hostname}", "-s", str(script(c.dir)))


LEASE_RE = re.compile(r"lease of ([0-9.]+) obtained")


def leased(output: str) -> str | None:
    found = LEASE_RE.findall(output)
    return found[-1] if found else None


def dhcp(c: Cluster, ns: str, hostname: str, tries: int = 10, ifname: str = "vde0", *extra: str) -> str:
    """Obtain an address for ns's ifname with the test's own client; the address."""
    res = sh(*dhcp_cmd(c, ns, hostname, tries, ifname), *extra, check=False, timeout=tries * 3 + 10)
    addr = leased(res.stdout + res.stderr)
    assert addr is not None, f"no lease for {ns}: {res.stdout}{res.stderr}"
    return addr


def leaf(c: Cluster, host: int, gid: int, name: str) -> tuple[str, str]:
    """A namespace on VLAN gid through Debian's vde_plug on host, without
    address or DHCP client: (namespace, its tap)."""
    tap = f"lf{name}"[:15]
    ns, _proc = c.lan.leaf(host, name, ["vde_plug", f"vxvde:///grp={gid}", f"tap://{tap}"], [])
    return ns, tap


def wait_addr(ns: str, timeout: float = 30) -> str:
    """The IPv4 address vxvdexd's DHCP client puts on ns's vde0."""
    found: list[str] = wait_for(lambda: addresses(ns, "inet"), timeout=timeout,
                                what=f"an IPv4 address by DHCP on {ns}")
    return found[0]


def wait_addrs(namespaces: list[str], timeout: float = 60) -> dict[str, str]:
    """wait_addr for many (their clients run at once): ns -> address."""
    return {ns: wait_addr(ns, timeout) for ns in namespaces}


def lookup(ns: str, name: str, server: str) -> str:
    """What busybox nslookup says when ns asks server for name's IPv4 address."""
    res = sh(*in_ns(ns, "busybox", "nslookup", "-type=a", name, server), check=False, timeout=30)
    return str(res.stdout + res.stderr)


def resolve(ns: str, name: str, server: str) -> str | None:
    """The IPv4 address DNS server gives for name, asked from ns; None if none."""
    answer = lookup(ns, name, server).split("Name:", 1)
    found = re.findall(r"Address:\s*([0-9.]+)", answer[1]) if len(answer) == 2 else []
    return found[0] if found else None


def addresses(ns: str, family: str = "inet6", scope: str = "global") -> list[str]:
    res = sh("ip", "-n", ns, "-j", "addr", "show", "dev", "vde0")
    return [a["local"] for link in json.loads(res.stdout) for a in link.get("addr_info", [])
            if a["family"] == family and a.get("scope") == scope]


def wait_ula(ns: str, prefix: str, timeout: float = 30) -> str:
    """The address SLAAC gives ns's vde0 in prefix (from the router advertisements)."""
    net = ipaddress.IPv6Network(prefix)

    def ula() -> str | None:
        return next((a for a in addresses(ns) if ipaddress.IPv6Address(a) in net), None)
    found: str = wait_for(ula, timeout=timeout, what=f"an address in {prefix} on {ns}")
    return found


def gateways(c: Cluster, host: int) -> list[dict]:
    answer = c.ask(host, "gateways")
    assert answer.status == "ok", answer.text
    found: list[dict] = answer.json()
    return found


def gateway(c: Cluster, host: int, gid: int) -> dict:
    return next(g for g in gateways(c, host) if g["vlan_gid"] == gid)


def dnsmasq_pids(ns: str) -> list[int]:
    """Every dnsmasq running in namespace ns."""
    res = sh("ip", "netns", "pids", ns, check=False)
    pids = []
    for pid in res.stdout.split():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq":
                pids.append(int(pid))
        except OSError:
            continue
    return pids
