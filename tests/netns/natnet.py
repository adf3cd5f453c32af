"""VLANs with hand-built gateways on a simulated LAN, for the egress nat tests.

    client ns --eth0--.                                   outside ns (192.0.2.100)
    client ns --eth0--+ br0 [vlan ns] --vde0 [gw ns] --up0...vxgw<gid> [h1] --eth0-- br0 [lan]
                                                       (made by services/nat.py)

A VLAN here is a bridge in a namespace of its own with a gateway namespace
(vde0 carrying Vlan.gateway4 and gateway6, as the gateway of vxvdexd has)
and clients with static addresses and default routes through the gateway:
the nat rules are tested on their own, without dnsmasq or endpoints.
"""

from __future__ import annotations

import ipaddress
import json
import select
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lan import Lan, wait_for

from vxvdex.services import vlans

HERE = Path(__file__).resolve().parent
OUTSIDE4, OUTSIDE6 = "192.0.2.100", "2001:db8::100"
SERVER = 1  # the host that serves the VLANs
SEND_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[3].startswith("--from="):
    s.bind((sys.argv.pop(3)[7:], 0))
for addr in sys.argv[3:]:
    try:
        s.sendto(sys.argv[1].encode(), (addr, int(sys.argv[2])))
    except OSError:
        pass
"""


def next_line(proc: subprocess.Popen) -> str:
    """The next line a captured process prints (fails rather than hangs)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready, "no output within 30 s"
    return str(proc.stdout.readline()).strip()


@dataclass
class TestVlan:
    gid: int
    subnet: ipaddress.IPv4Network
    gw_ns: str
    clients: list[str] = field(default_factory=list)

    @property
    def spec(self) -> vlans.Vlan:
        return vlans.Vlan(gid=self.gid, group=f"g{self.gid}", subnet=self.subnet,
                          prefix6=vlans.ula_prefix(self.gid), server="h1", egress="nat", domain="x.vx")

    def client_addr(self, i: int) -> str:
        return str(self.subnet.network_address + 10 + i)

    def client_addr6(self, i: int) -> str:
        return str(self.spec.prefix6.network_address + 10 + i)


class NatNet:
    def __init__(self, lan: Lan) -> None:
        self.lan = lan
        self.host = lan.host(SERVER)
        self.outside = lan.add_ns("out")
        lan.ip(self.outside, "link", "add", "eth0", "type", "veth", "peer", "name", "pout",
               "netns", lan.bridge_ns)
        lan.ip(lan.bridge_ns, "link", "set", "pout", "master", "br0", "up")
        lan.ip(self.outside, "link", "set", "eth0", "up")
        lan.ip(self.outside, "addr", "add", f"{OUTSIDE4}/24", "dev", "eth0")
        lan.ip(self.outside, "addr", "add", f"{OUTSIDE6}/64", "dev", "eth0", "nodad")

    def vlan(self, gid: int, subnet: str, clients: int = 1) -> TestVlan:
        v = TestVlan(gid, ipaddress.IPv4Network(subnet), self.lan.add_ns(f"gw-{gid}"))
        br = self.lan.add_ns(f"v{gid}")
        self.lan.ip(br, "link", "add", "br0", "type", "bridge")
        self.lan.ip(br, "link", "set", "br0", "up")
        spec = v.spec
        self._wire(br, v.gw_ns, "vde0", "pgw",
                   [f"{spec.gateway4}/{v.subnet.prefixlen}", f"{spec.gateway6}/64"])
        for i in range(clients):
            ns = self.lan.add_ns(f"c{gid}-{i}")
            self._wire(br, ns, "eth0", f"pc{i}",
                       [f"{v.client_addr(i)}/{v.subnet.prefixlen}", f"{v.client_addr6(i)}/64"])
            self.lan.ip(ns, "route", "add", "default", "via", str(spec.gateway4))
            self.lan.ip(ns, "-6", "route", "add", "default", "via", str(spec.gateway6))
            v.clients.append(ns)
        return v

    def _wire(self, br: str, ns: str, ifname: str, port: str, addrs: list[str]) -> None:
        self.lan.ip(ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", br)
        self.lan.ip(br, "link", "set", port, "master", "br0", "up")
        self.lan.ip(ns, "link", "set", ifname, "up")
        for addr in addrs:
            self.lan.ip(ns, "addr", "add", addr, "dev", ifname, *(("nodad",) if ":" in addr else ()))

    # ---- the code under test, run in the serving host's namespace ---------------
    def natctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.lan.run(self.host, sys.executable, str(HERE / "natctl.py"), *args, check=check)

    def attach(self, v: TestVlan, uplink: str = "eth0") -> None:
        self.natctl("attach", v.gw_ns, str(v.gid), str(v.subnet), uplink)

    # ---- real traffic ------------------------------------------------------------
    def serve(self, ns: str, tag: str, *ports: int) -> None:
        """A tagserver in ns (ended with the LAN), ready when this returns."""
        proc = self.lan.spawn(ns, sys.executable, str(HERE / "tagserver.py"), tag,
                              *map(str, ports), capture=True)
        assert proc.stdout is not None
        wait_for(lambda: proc.stdout.readline().strip() == "ready", timeout=30, what=f"tagserver {tag}")

    def listen_udp(self, ns: str, port: int) -> subprocess.Popen:
        """A UDP listener in ns printing each datagram's payload (see next_line)."""
        proc = self.lan.spawn(ns, sys.executable, str(HERE / "vxlisten.py"), str(port), capture=True)
        assert next_line(proc) == "ready"
        return proc

    def send_udp(self, ns: str, port: int, text: str, *addrs: str, source: str = "") -> None:
        """One datagram from ns (from `source` if given) to each address (a
        refused send is no error)."""
        self.lan.run(ns, sys.executable, "-c", SEND_UDP, text, str(port),
                     *((f"--from={source}",) if source else ()), *addrs)

    def probe(self, ns: str, timeout: float = 2.0, **targets: tuple[str, int]) -> dict[str, str | None]:
        """From ns, connect to every target at once: {name: "TAG SOURCE" or None}."""
        args = [f"{name}={addr},{port}" for name, (addr, port) in targets.items()]
        res = self.lan.run(ns, sys.executable, str(HERE / "probe.py"), str(timeout), *args)
        return json.loads(res.stdout)  # type: ignore[no-any-return]
