"""The vxvde port guard. Sending: nftables table `inet vxvdex_guard`, vxvdex's
own (this module). Receiving: a bind restriction (bindguard.py).

The wire has no authentication: any process with the host's network could
send vxvde datagrams into any VLAN. The guard drops, in the output hook,
every UDP datagram of a socket owned by anyone but root and the endpoint
user that either goes to the vxvde port (the groups, and unicast to that
port) or carries the vxvde header (unicast to an endpoint's ephemeral
port). A UDP GSO send is one packet here but several on the wire: its
later segments are checked by a cgroup egress program (gsoguard.py,
attached with the bind programs). Sockets without an owner (the af_vxvdex module's kernel sockets,
the kernel's own replies) do not match `meta skuid` and pass: the module
checks their headers itself.

The table is vxvdex's alone: loaded atomically with `nft -f` (the
create-delete-define idiom replaces it whole in one transaction) and
removed whole; no other table is read or touched. Other vxvdex tables
(e.g. a NAT table of VLAN services) live beside it under their own names.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

from vxvdex.guard import bindguard

TABLE = "vxvdex_guard"
FAMILY = "inet"
# The first 4 bytes of a vxvde header (flags 0x08 = VNI present, then 3
# reserved zero bytes), at the UDP payload (bit offset 64 of the transport
# header): the fixed part every receiver checks.
HEADER_MATCH = "@th,64,32 0x08000000"


class GuardError(RuntimeError):
    """The guard could not be installed or removed; the message says what to do."""


def ruleset(port: int, allowed_uids: list[int]) -> str:
    """The nft script that (re)creates the table whole, for nft -f."""
    uids = ", ".join(str(u) for u in sorted(set(allowed_uids)))
    drop = f"meta l4proto udp meta skuid != {{ {uids} }}"
    return (f"table {FAMILY} {TABLE}\n"
            f"delete table {FAMILY} {TABLE}\n"
            f"table {FAMILY} {TABLE} {{\n"
            f"\tchain output {{\n"
            f"\t\ttype filter hook output priority filter; policy accept;\n"
            f"\t\t{drop} udp dport {port} counter drop comment \"vxvde port: root and endpoints only\"\n"
            f"\t\t{drop} {HEADER_MATCH} counter drop comment \"vxvde header: root and endpoints only\"\n"
            f"\t}}\n"
            f"}}\n")


def removal() -> str:
    """The nft script that removes the table whole (and succeeds if it is absent)."""
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


def _nft(script: str) -> None:
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        raise GuardError("nft not found: install nftables (`apt install nftables`) "
                         "or set port_guard: false in the configuration")
    done = subprocess.run([nft, "-f", "-"], input=script, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise GuardError(f"nft -f failed: {done.stderr.strip() or done.returncode}")


def install(port: int, allowed_uids: list[int]) -> None:
    """Install or replace the guard (atomic: one nft transaction)."""
    _nft(ruleset(port, [0, *allowed_uids]))


def remove() -> None:
    """Remove the guard if it is there."""
    _nft(removal())


def remove_all() -> None:
    """Remove both halves (vxvdexd --remove-guard: package removal, tests)."""
    remove()
    try:
        bindguard.remove()
    except bindguard.BindGuardError as err:
        raise GuardError(f"bind restriction: {err.strerror}") from None


def sync(enabled: bool, port: int, allowed_uids: list[int], ip_version: int = 4,
         prefix: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None) -> str:
    """Make both halves of the guard match the configuration; return a line for the log."""
    try:
        if enabled:
            install(port, allowed_uids)
            bindguard.install(port, allowed_uids, ip_version, prefix)
            return (f"port guard on: only root and uids {sorted(set(allowed_uids))} may send to UDP "
                    f"port {port} or send vxvde headers (nft table {FAMILY} {TABLE}), or bind port "
                    f"{port} except on the group of their own gid (cgroup bind program)")
        remove()
        bindguard.remove()
    except bindguard.BindGuardError as err:
        raise GuardError(f"bind restriction: {err.strerror}") from None
    return "port guard off (port_guard: false): any local user may send into and read any VLAN"
