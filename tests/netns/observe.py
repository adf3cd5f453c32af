"""Looking at endpoints and namespaces from the outside: status files,
interface MACs, kernel IP counters, and marked UDP traffic."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lan import REPO, Lan, wait_for

UDPSEND = str(REPO / "tests" / "netns" / "udpsend.py")


def status(path: Path) -> dict:
    """The last status an endpoint wrote (replaced atomically, once a second)."""
    result: dict = json.loads(path.read_text())
    return result


def wait_status(path: Path, predicate: Callable[[dict], object], timeout: float = 5.0,
                what: str = "status", since_ns: int | None = None) -> dict:
    """Poll a status file until predicate(status) holds; return that status.
    since_ns: only a status computed after time.time_ns() was since_ns counts
    (as in next_status): "not learned yet" is then not taken for "forgotten"."""
    def check() -> dict | None:
        if not path.exists():
            return None
        if since_ns is not None and path.stat().st_mtime_ns <= since_ns + 10_000_000:
            return None
        st = status(path)
        return st if predicate(st) else None
    result: dict = wait_for(check, timeout=timeout, what=what)
    return result


def next_status(path: Path, timeout: float = 5.0, since_ns: int | None = None) -> dict:
    """A status computed after this call (or after time.time_ns() was `since_ns`), so
    its counters include all that happened before. The file is written right after
    the status is computed: a file whose mtime is clearly later (10 ms, several times
    the timestamp granularity and the time to write it) holds such a status."""
    wait_for(path.exists, timeout=timeout, what=f"{path.name} to appear")
    after = (time.time_ns() if since_ns is None else since_ns) + 10_000_000
    wait_for(lambda: path.stat().st_mtime_ns > after, timeout=timeout, what=f"a new {path.name}")
    return status(path)


def peer_macs(st: dict) -> set[str]:
    return {p["mac"] for p in st["peers"]}


def peers_at(st: dict, address: str, port: int) -> list[dict]:
    return [p for p in st["peers"] if p["address"] == address and p["port"] == port]


def mac_of(lan: Lan, ns: str, ifname: str) -> str:
    """The MAC of an interface, as "aa:bb:..." (the form status files use)."""
    res = lan.run(ns, "ip", "-j", "link", "show", ifname)
    mac: str = json.loads(res.stdout)[0]["address"]
    return mac


def ip_counters(lan: Lan, ns: str) -> dict[str, int]:
    """The kernel's SNMP counters of a namespace: IPv4 ones as "IpFragCreates",
    "UdpInDatagrams"..., IPv6 ones as /proc/net/snmp6 names them ("Ip6FragCreates")."""
    counters: dict[str, int] = {}
    lines = lan.run(ns, "cat", "/proc/net/snmp").stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        proto, *keys = names.split()
        counters.update({f"{proto[:-1]}{k}": int(v)
                         for k, v in zip(keys, values.split()[1:], strict=True)})
    for line in lan.run(ns, "cat", "/proc/net/snmp6").stdout.splitlines():
        key, value = line.split()
        counters[key] = int(value)
    return counters


def send_udp(lan: Lan, ns: str, host: str, port: int, count: int, marker: bytes,
             size: int = 200, broadcast: bool = False, window: int = 0) -> None:
    """Send `count` UDP datagrams carrying `marker` from ns to host:port
    (window: paced by a receiver's acknowledgements, see udpsend.py)."""
    lan.run(ns, sys.executable, UDPSEND, host, str(port), str(count), marker.decode(), str(size),
            *(("--broadcast",) if broadcast else ()), *(("--window", str(window)) if window else ()))


_RAW_SEND = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for frame in sys.argv[2:]:
    s.send(bytes.fromhex(frame))
"""


def send_frames(lan: Lan, ns: str, ifname: str, frames: list[bytes]) -> None:
    """Put raw Ethernet frames (any source MAC) on an interface of ns."""
    lan.run(ns, sys.executable, "-c", _RAW_SEND, ifname, *(f.hex() for f in frames))


def static_neighbors(lan: Lan, ns: str, ifname: str, neighbors: dict[str, str]) -> None:
    """Make a leaf silent: no IPv6 (no MLD, ND, router solicitations), permanent ARP entries."""
    lan.run(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1")
    for ip, mac in neighbors.items():
        lan.ip(ns, "neigh", "replace", ip, "lladdr", mac, "dev", ifname, "nud", "permanent")


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))
