"""dnsmasq, the gateway's DHCPv4, router advertisement and DNS server.

One dnsmasq per served VLAN, inside its gateway namespace, bound to the
gateway's tap alone. Started as root by the daemon, it opens its sockets and
its lease file and then drops to its own user (Debian's `dnsmasq`, keeping
only the capabilities DHCP needs): it writes leases through the descriptor
opened before the drop, so the lease directory stays root's and a
compromised dnsmasq can neither replace nor add files there.

Its whole configuration is its command line (no file is read: --conf-file
is /dev/null), which is also how the daemon recognises, after a restart,
whether a dnsmasq it finds serves the configuration of now.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

from vxvdex.daemon import netns
from vxvdex.services.vlans import Vlan

DNSMASQ = "/usr/sbin/dnsmasq"
USER = "dnsmasq"          # created by dnsmasq-base
IFNAME = "vde0"           # the gateway's tap
LEASE_TIME = "12h"
RA_INTERVAL = 10          # seconds between unsolicited router advertisements


class Missing(OSError):
    """dnsmasq or its user is not installed (dnsmasq-base)."""


def lease_path(state_dir: Path, gid: int) -> Path:
    return state_dir / "leases" / f"{gid}.leases"


def prepare_leases(state_dir: Path, gid: int) -> Path:
    """The lease file's directory, root's and not writable by others; the
    file itself is opened (created) by dnsmasq while still root."""
    leases = lease_path(state_dir, gid)
    leases.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    return leases


def command(vlan: Vlan, state_dir: Path, group: str | None = None) -> list[str]:
    """dnsmasq's command line for vlan (its whole configuration); group:
    the one dnsmasq drops to (default: the dnsmasq user's own)."""
    start, end = vlan.dhcp_range
    nat = vlan.egress == "nat"
    args = [
        DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
        f"--user={USER}", f"--group={group or _group_name()}",
        # Only the VLAN: the tap, not lo, not the nat veth (up0).
        f"--interface={IFNAME}", "--except-interface=lo", "--bind-dynamic",
        f"--dhcp-range={start},{end},{vlan.subnet.netmask},{LEASE_TIME}",
        f"--dhcp-leasefile={lease_path(state_dir, vlan.gid)}",
        # The only DHCP server of the VLAN: a client that comes back after a
        # restart of either side is answered at once.
        "--dhcp-authoritative",
        # Clients are known by their MAC alone (the client id they send is
        # 01:MAC anyway): with dhcpguard.py, one tap cannot hold many leases.
        "--dhcp-ignore-clid",
        # The subnet is the VLAN's alone, nobody sets addresses by hand there:
        # no ping before an offer (it delays every new client by seconds).
        "--no-ping",
        f"--dhcp-lease-max={int(end) - int(start) + 1}",
        # Names: clients' DHCP host names under the domain, and the gateway.
        f"--domain={vlan.domain}", f"--local=/{vlan.domain}/", "--no-hosts",
        f"--host-record=gw.{vlan.domain},{vlan.gateway4},{vlan.gateway6}",
        "--domain-needed", "--bogus-priv",
        # IPv6: addresses by SLAAC from the router advertisements.
        "--enable-ra", f"--dhcp-range={vlan.prefix6.network_address},ra-only,64",
    ]
    if nat:
        args += ["--resolv-file=/etc/resolv.conf", f"--ra-param={IFNAME},{RA_INTERVAL}"]
    else:
        # Nothing beyond the VLAN: no default router (DHCP option 3 empty,
        # router lifetime 0) and no forwarding of names outside the domain.
        args += ["--no-resolv", "--dhcp-option=option:router", f"--ra-param={IFNAME},{RA_INTERVAL},0"]
    return args


def _group_name() -> str:
    import grp
    try:
        return grp.getgrgid(pwd.getpwnam(USER).pw_gid).gr_name
    except KeyError:
        raise Missing(f"user {USER} is missing: install dnsmasq-base") from None


def uid() -> int:
    try:
        return pwd.getpwnam(USER).pw_uid
    except KeyError:
        raise Missing(f"user {USER} is missing: install dnsmasq-base") from None


def start(ns_name: str, vlan: Vlan, state_dir: Path) -> int:
    """Start dnsmasq inside ns_name; return its pid (nsenter execs it: the same process)."""
    if not os.access(DNSMASQ, os.X_OK):
        raise Missing(f"{DNSMASQ} is missing: install dnsmasq-base (the gateway of VLAN "
                      f"{vlan.group} needs it)")
    prepare_leases(state_dir, vlan.gid)
    proc = subprocess.Popen(["nsenter", f"--net={netns.path_of(ns_name)}", "--", *command(vlan, state_dir)],
                            stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    return proc.pid


def reap(pid: int) -> None:
    """Collect the exit of a dnsmasq we started (none for one adopted from an earlier run)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def count_leases(state_dir: Path, gid: int, now: float | None = None) -> int:
    """Leases in force in the lease file (lines: expiry mac address name client-id)."""
    now = time.time() if now is None else now
    try:
        lines = lease_path(state_dir, gid).read_text().splitlines()
    except OSError:
        return 0
    count = 0
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[0].isdigit() and (int(fields[0]) == 0 or int(fields[0]) > now):
            count += 1
    return count
