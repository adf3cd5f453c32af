"""A stand-in for the VLAN gateway in the DHCP client tests: dnsmasq in a
leaf namespace on the VLAN (vde_plug vxvde://), configured as the gateway
will be (the subnet's first address, DHCPv4 over the rest, the domain and
the clients' names, router advertisements for the /64)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from cluster import Cluster
from endpoints import vde_plug

SUBNET = ipaddress.IPv4Network("192.0.2.128/26")


def vlans_config(group: str, server: str = "h3", subnet: ipaddress.IPv4Network = SUBNET,
                 domain: str = "") -> str:
    extra = f", domain: {domain}" if domain else ""
    return f"hosts: [h1, h2, h3]\nvlans:\n  {group}: {{subnet: {subnet}, server: {server}{extra}}}\n"


class Gateway:
    """dnsmasq serving one VLAN from a leaf on `host` (started by start())."""

    def __init__(self, cluster: Cluster, host: int, gid: int, domain: str, workdir: Path,
                 subnet: ipaddress.IPv4Network = SUBNET, lease: str = "1h", ping: bool = True) -> None:
        self.cluster, self.host, self.gid, self.domain = cluster, host, gid, domain
        self.subnet, self.lease, self.dir = subnet, lease, workdir
        self.ping = ping  # dnsmasq pings an address before offering it (up to 3 s per new client)
        self.gw4 = subnet.network_address + 1
        self.prefix6 = ipaddress.IPv6Network(((0xFD7864 << 104) | (gid << 80), 64))
        self.gw6 = self.prefix6.network_address + 1
        self.tap = f"gw{cluster.tag}"
        self.ns: str | None = None
        self.dnsmasq: subprocess.Popen | None = None
        self.plug: subprocess.Popen | None = None

    @property
    def leases(self) -> Path:
        return self.dir / f"{self.gid}.leases"

    def attach(self, url: str) -> None:
        """The gateway's namespace on the VLAN at url (the one `status` shows
        for its users' taps), no DHCP server yet."""
        self.ns, self.plug = self.cluster.lan.leaf(
            self.host, f"gw{self.gid}", vde_plug(url, self.tap),
            [f"{self.gw4}/{self.subnet.prefixlen}", f"{self.gw6}/64"], log=self.dir / "vde_plug.log")

    def serve(self) -> None:
        """Start dnsmasq in the gateway namespace."""
        assert self.ns is not None
        first, last = self.subnet.network_address + 2, self.subnet.broadcast_address - 1
        self.dnsmasq = self.cluster.lan.spawn(
            self.ns, "dnsmasq", "-k", "-C", "/dev/null", f"--interface={self.tap}", "--bind-interfaces",
            f"--dhcp-range={first},{last},{self.lease}", f"--dhcp-leasefile={self.leases}",
            f"--pid-file={self.dir / 'dnsmasq.pid'}", f"--domain={self.domain}", f"--local=/{self.domain}/",
            "--no-resolv", "--no-hosts", "--enable-ra",
            f"--dhcp-range={self.prefix6.network_address},ra-only",
            "--log-dhcp", f"--log-facility={self.dir / 'dnsmasq.log'}", "--dhcp-authoritative",
            *(() if self.ping else ("--no-ping",)),
            log=self.dir / "dnsmasq.out")

    def stop_serving(self) -> None:
        if self.dnsmasq is not None:
            self.cluster.lan.stop(self.dnsmasq)
            self.dnsmasq = None

    def start(self, url: str) -> Gateway:
        self.attach(url)
        self.serve()
        return self


def served_alice(cluster: Cluster, workdir: Path, domain: str, lease: str = "1h") -> tuple[str, Gateway]:
    """alice, on a VLAN served from h3 by the file, with h1's daemon started
    and the gateway's stand-in (on h2) made but not yet attached."""
    group = f"vxa{cluster.tag}"
    gid = cluster.group(group)
    alice = cluster.user("alice", group)
    cluster.extra_config = vlans_config(group, domain=domain)
    cluster.start(1)
    return alice, Gateway(cluster, 2, gid, domain, workdir, lease=lease)
