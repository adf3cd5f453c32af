"""Egress nat of a VLAN: a veth from its gateway namespace to the host, and
the host masquerading what comes out of it by the uplink (nftables).

    VLAN clients --vde0-- [vxvdex-gw-<gid>] --up0 ... vxgw<gid>-- [host] --uplink-- outside
                          forwards (ip_forward)               nft table inet vxvdex_egress

Everything happens in the network namespace the caller runs in (the root
namespace on a real host; a simulated host's namespace in tests).

The link net. Both ends of every gateway veth carry the same two
link-local addresses, LINK_HOST on the host side and LINK_GW in the gateway
namespace, as /32s with `onlink` routes: nothing to configure, no two gids
can collide (a /30 carved from the gid could), and the addresses never
leave the veth (the gateway's own packets take its VLAN address as source,
and the host masquerades everything to the uplink's address).

Sysctls: the gateway namespace forwards (ip_forward; its only interfaces are
vde0 and up0). The host forwards IPv4 only on the interfaces that need it
(conf.<vxgw>.forwarding for the VLAN's packets, conf.<uplink>.forwarding for
their replies), never `net.ipv4.ip_forward`; if the uplink did not forward
before, the table's uplink_guard chain keeps everything else that arrives
there unforwarded, and remove_all() turns it off again. IPv6 is off on both
ends of the veth: a VLAN's IPv6 prefix (a ULA by default) does not leave it.

API (each call is idempotent, for re-adoption after a daemon restart):
- attach(gw_ns, vlan, uplink): egress nat for `vlan` whose gateway namespace
  `gw_ns` exists with its VLAN address (Vlan.gateway4 on vde0) already set.
- detach(gid): no veth for gid (the `egress: none` state); the table stays.
- attached(): the gids that have a veth on this host.
- remove_all(): every gateway veth, then the table, gone; uplink forwarding
  restored. The table and the veths live and die together: never the
  veths without the table (they would forward unfiltered).
- default_uplink(): the interface of the IPv4 default route.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from vxvdex.daemon import netns, provision
from vxvdex.services import nftrules
from vxvdex.services.vlans import Vlan

LINK_HOST = "169.254.88.1"
LINK_GW = "169.254.88.2"
GW_IFNAME = "up0"
HOST_IF_RE = re.compile(rf"^{nftrules.VETH_PREFIX}(\d+)$")
SYS_NET = Path("/proc/sys/net")


class NatError(Exception):
    """A step of egress nat failed; str() says which and why."""


def host_ifname(gid: int) -> str:
    return f"{nftrules.VETH_PREFIX}{gid}"


def _run(*cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        package = "nftables" if cmd[0] == "nft" else "iproute2"
        raise NatError(f"{cmd[0]} is missing: install {package}") from None
    if check and res.returncode != 0:
        raise NatError(f"{' '.join(cmd)}: {(res.stderr or res.stdout).strip()}")
    return res


def _sysctl(path: str, value: str) -> None:
    """Write /proc/sys/net/<path> if it exists (IPv6 may be off entirely)."""
    target = SYS_NET / path
    if path.startswith("ipv6/") and not target.exists():
        return
    target.write_text(value + "\n")


def _link_exists(name: str, ns: str | None = None) -> bool:
    return _run("ip", *(("-n", ns) if ns else ()), "link", "show", "dev", name, check=False).returncode == 0


# ---- the table -----------------------------------------------------------------------

def _guarded_uplink() -> str | None:
    """The uplink whose forwarding vxvdex turned on (from the table), if any."""
    res = _run("nft", "list", "chain", nftrules.FAMILY, nftrules.TABLE, "forward", check=False)
    found = re.search(rf'iifname "([^"]+)" jump {nftrules.GUARD_CHAIN}', res.stdout)
    return found.group(1) if found else None


def _ensure_table(uplink: str) -> None:
    """The table (atomically replaced), then forwarding on the uplink."""
    fwd = f"ipv4/conf/{uplink}/forwarding"
    if not (SYS_NET / fwd).exists():
        raise NatError(f"uplink {uplink} does not exist here: set network.uplink to the interface "
                       f"that reaches the outside")
    guard = _guarded_uplink() == uplink or (SYS_NET / fwd).read_text().strip() == "0"
    _run("nft", "-f", "-", stdin=nftrules.ruleset(uplink, guard))
    _sysctl(fwd, "1")


# ---- one VLAN ------------------------------------------------------------------------

def attach(gw_ns: str, vlan: Vlan, uplink: str) -> None:
    """Egress nat for vlan through its gateway namespace gw_ns (idempotent)."""
    host_if = host_ifname(vlan.gid)
    _ensure_table(uplink)  # the filter first: never a veth without it
    if not (_link_exists(host_if) and _link_exists(GW_IFNAME, gw_ns)):
        _run("ip", "link", "del", "dev", host_if, check=False)
        _run("ip", "-n", gw_ns, "link", "del", "dev", GW_IFNAME, check=False)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", GW_IFNAME, "netns", gw_ns)
    _sysctl(f"ipv6/conf/{host_if}/disable_ipv6", "1")
    _sysctl(f"ipv4/conf/{host_if}/forwarding", "1")
    _run("ip", "addr", "replace", f"{LINK_HOST}/32", "dev", host_if)
    _run("ip", "link", "set", "dev", host_if, "up")
    _run("ip", "route", "replace", str(vlan.subnet), "via", LINK_GW, "dev", host_if, "onlink")
    netns.enter(gw_ns, _gateway_sysctls)
    _run("ip", "-n", gw_ns, "addr", "replace", f"{LINK_GW}/32", "dev", GW_IFNAME)
    _run("ip", "-n", gw_ns, "link", "set", "dev", GW_IFNAME, "up")
    # src: the gateway's own packets (DNS forwarding) leave with its VLAN
    # address, which the host routes back; LINK_GW is in every gateway.
    _run("ip", "-n", gw_ns, "route", "replace", "default", "via", LINK_HOST, "dev", GW_IFNAME,
         "onlink", "src", str(vlan.gateway4))


def _gateway_sysctls() -> None:
    """Inside the gateway namespace: IPv4 forwarding on, no IPv6 on up0."""
    _sysctl(f"ipv6/conf/{GW_IFNAME}/disable_ipv6", "1")
    _sysctl("ipv4/ip_forward", "1")


def detach(gid: int) -> None:
    """No veth for gid (its peer in the gateway namespace goes with it)."""
    _run("ip", "link", "del", "dev", host_ifname(gid), check=False)


def attached() -> list[int]:
    """The gids with a gateway veth in this namespace."""
    links = json.loads(_run("ip", "-j", "link", "show", "type", "veth").stdout or "[]")
    return sorted(int(m.group(1)) for link in links if (m := HOST_IF_RE.match(link.get("ifname", ""))))


def remove_all() -> None:
    """Every gateway veth, then the table; the uplink forwards as it did before."""
    for gid in attached():
        detach(gid)
    guarded = _guarded_uplink()
    _run("nft", "-f", "-", stdin=nftrules.deletion())
    if guarded is not None and (SYS_NET / f"ipv4/conf/{guarded}/forwarding").exists():
        _sysctl(f"ipv4/conf/{guarded}/forwarding", "0")


def default_uplink() -> str:
    """The interface of the IPv4 default route."""
    found = provision.default_uplink()
    if found is None:
        raise NatError("no IPv4 default route: set network.uplink to the interface that reaches the outside")
    return found
