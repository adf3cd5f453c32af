"""What a user's namespace contains: lo up, the host's ping group range
and one tap per network.

Run inside the namespace (see netns.enter/create). Every step is idempotent,
so the same code provisions, repairs and re-adopts.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from vxvdex.dataplane import tap as tapmod

log = logging.getLogger("vxvdexd")

# Who may open ICMP datagram sockets (unprivileged ping; Debian 13's ping has
# no file capability and relies on it). Per namespace; a new one says "1 0".
PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
MACHINE_ID = Path("/etc/machine-id")
HOST_ID_FILE = "host-id"
SIOCETHTOOL, ETHTOOL_GPERMADDR, MAX_ADDR_LEN = 0x8946, 0x20, 32


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


def host_id(run_dir: Path, host_name: str, uplink: str | None,
            machine_id: Path = MACHINE_ID) -> str:
    """This host's identity for MACs, kept in run_dir/host-id for the boot.

    Made of the machine-id, the host name, the uplink's permanent MAC (when
    it has one) and the run directory (several simulated hosts on one
    machine differ by it): hosts cloned from one image share the machine-id
    but not their name or their NIC. Kept in the run directory (a tmpfs,
    never in an image), so a daemon restart in the same boot keeps the MACs
    even if the uplink went away meanwhile; the inputs are stable across
    reboots, so are the MACs."""
    kept = run_dir / HOST_ID_FILE
    try:
        return kept.read_text().strip()
    except FileNotFoundError:
        pass
    try:
        machine = machine_id.read_text().strip()
    except OSError:
        machine = ""
    made = identity(machine, host_name, permanent_mac(uplink) if uplink else None, run_dir)
    tmp = kept.with_name(f".{HOST_ID_FILE}.tmp")
    try:
        run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp.write_text(made + "\n")
        tmp.replace(kept)
    except OSError as err:  # a full run directory: serve anyway, the inputs give the same MACs
        tmp.unlink(missing_ok=True)
        log.warning("cannot keep %s (%s): MACs are made from the host's identity until it can be "
                    "written", kept, err.strerror)
    return made


def identity(machine: str, host_name: str, nic: bytes | None, run_dir: Path) -> str:
    """What host_id keeps: every input that tells this host from its clones."""
    return f"{machine}:{host_name}:{nic.hex(':') if nic else '-'}:{run_dir}"


def default_uplink() -> str | None:
    """The interface of this namespace's IPv4 default route, if there is one."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            return fields[0]
    return None


def permanent_mac(ifname: str) -> bytes | None:
    """The NIC's burnt-in MAC (ethtool -P), None for virtual links (veth,
    bridge: all zeros) or a missing one."""
    buf = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_GPERMADDR, MAX_ADDR_LEN),
                                      8 + MAX_ADDR_LEN)
    ifreq = struct.pack("16sP", ifname.encode()[:15], ctypes.addressof(buf)).ljust(40, b"\0")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, SIOCETHTOOL, ifreq)
    except OSError:
        return None
    size = min(struct.unpack_from("=I", buf.raw, 4)[0], MAX_ADDR_LEN)
    mac = buf.raw[8:8 + size]
    return mac if any(mac) else None


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
