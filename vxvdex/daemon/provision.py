"""What a user's namespace contains: lo up, the host's ping group range
and one tap per network.

Run inside the namespace (see netns.enter/create). Every step is idempotent,
so the same code provisions, repairs and re-adopts.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from vxvdex.dataplane import tap as tapmod

# Who may open ICMP datagram sockets (unprivileged ping; Debian 13's ping has
# no file capability and relies on it). Per namespace; a new one says "1 0".
PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")


@dataclass(frozen=True)
class Port:
    """One tap of a user's namespace and the VLAN behind it."""

    ifname: str
    gid: int
    mac: bytes
    mtu: int


def stable_mac(host_id: str, user: str, gid: int, ifname: str) -> bytes:
    """A locally administered unicast MAC that survives relogin and restarts
    (so DHCP leases and neighbours' caches stay valid)."""
    raw = bytearray(hashlib.sha256(f"{host_id}/{user}/{gid}/{ifname}".encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return bytes(raw)


def host_id(run_dir: Path) -> str:
    """This host's identity for MACs: machine-id plus the run directory
    (several simulated hosts on one machine differ by run directory)."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = socket.gethostname()
    return f"{machine}:{run_dir}"


def link_up(name: str) -> None:
    tapmod.set_up(name)


def accept_ra(ifname: str) -> None:
    """The kernel takes IPv6 addresses from the gateway's router advertisements
    on this tap (written, not assumed: a host may change the defaults new
    namespaces get); the user, without CAP_NET_ADMIN, cannot turn it off."""
    for knob in ("accept_ra", "autoconf"):
        Path(f"/proc/sys/net/ipv6/conf/{ifname}/{knob}").write_text("1\n")


def ensure_port(port: Port) -> int:
    """Create or attach the persistent tap of `port`, configure it, return an fd."""
    fd = tapmod.attach(port.ifname)
    try:
        tapmod.persist(fd)
        accept_ra(port.ifname)
        tapmod.set_mac(port.ifname, port.mac)
        tapmod.set_mtu(port.ifname, port.mtu)
        tapmod.set_up(port.ifname)
    except OSError:
        os.close(fd)
        raise
    return fd


def ping_group_range() -> str:
    """The calling thread's namespace's ping group range, e.g. "0 2147483647"."""
    return PING_GROUP_RANGE.read_text().strip()


def ensure_namespace(ports: list[Port], ping_range: str) -> list[int]:
    """lo up, ping_range (the host's: systemd opens it there only) and every
    port present; returns one tap fd per port, in order."""
    link_up("lo")
    PING_GROUP_RANGE.write_text(ping_range + "\n")
    return [ensure_port(p) for p in ports]


def set_ports_up(ports: list[Port], up: bool) -> None:
    for p in ports:
        tapmod.set_up(p.ifname, up)
