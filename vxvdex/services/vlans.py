"""The `vlans:` section of vxvdex.yaml: which VLANs are served, by which host, how.

A served VLAN has an IPv4 subnet (DHCPv4 from the gateway), an IPv6 /64
(router advertisements; by default a ULA prefix derived from the gid, so
every host computes the same one without configuration), the host that runs
its gateway, an egress policy and a DNS domain. The same file is installed
on every host: each daemon finds the VLANs it serves by its own host name.

Parsing happens in two steps: `parse_node` checks what the file alone can
tell (with the line of every mistake), and `resolve` maps group names to
gids through NSS when the daemon starts or reloads.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vxvdex.config import Config, ConfigError

EGRESS = ("none", "nat")
HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DOMAIN_RE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
FIELDS = ("subnet", "prefix6", "server", "egress", "domain")
# fd78:64 ("xd") + the 24-bit gid: a ULA /64 per VLAN, the same on every host.
ULA_BASE = 0xFD7864 << 104


@dataclass(frozen=True)
class VlanSpec:
    """A VLAN as written in the file (group not yet resolved)."""

    key: str                               # group name or gid, as written
    subnet: ipaddress.IPv4Network
    prefix6: ipaddress.IPv6Network | None  # None: auto (ULA from the gid)
    server: str
    egress: str
    domain: str | None                     # None: auto (<group>.vx)
    line: int


@dataclass(frozen=True)
class Vlan:
    """A served VLAN with its group resolved."""

    gid: int
    group: str
    subnet: ipaddress.IPv4Network
    prefix6: ipaddress.IPv6Network
    server: str
    egress: str
    domain: str

    @property
    def gateway4(self) -> ipaddress.IPv4Address:
        """The gateway's address on the VLAN: the subnet's first host."""
        return self.subnet.network_address + 1

    @property
    def gateway6(self) -> ipaddress.IPv6Address:
        return self.prefix6.network_address + 1

    @property
    def dhcp_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        """Every host address of the subnet but the gateway's."""
        return self.subnet.network_address + 2, self.subnet.broadcast_address - 1

    def served_here(self, host: str) -> bool:
        return self.server == host


def ula_prefix(gid: int) -> ipaddress.IPv6Network:
    """The default IPv6 /64 of a VLAN: fd78:64gg:gggg::/64 (g: the gid's 24 bits)."""
    return ipaddress.IPv6Network((ULA_BASE | (gid << 80), 64))


def default_domain(group: str) -> str:
    """<group>.vx, the group's name made a DNS label (lowercase, - for others)."""
    label = re.sub(r"[^a-z0-9-]", "-", group.lower()).strip("-")[:63] or "vlan"
    return f"{label}.vx"


def this_host() -> str:
    """This host's name as the file names it: the short host name, lowercase."""
    return os.uname().nodename.split(".")[0].lower()


def _scalar(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _subnet(v: Any) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(str(v), strict=True)
    except ValueError:
        raise ValueError("an IPv4 subnet such as 192.0.2.0/24 (host bits zero)") from None
    if net.prefixlen > 29:
        raise ValueError("an IPv4 subnet of at least 8 addresses (/29 or shorter), e.g. 192.0.2.0/24")
    return net


def _prefix6(v: Any) -> ipaddress.IPv6Network | None:
    if v == "auto":
        return None
    try:
        net = ipaddress.IPv6Network(str(v), strict=True)
    except ValueError:
        raise ValueError("auto or an IPv6 /64 such as 2001:db8:1::/64") from None
    if net.prefixlen != 64:
        raise ValueError(f"a /64 (router advertisements give addresses only in a /64), "
                         f"e.g. {net.network_address}/64, or auto")
    return net


def _server(v: Any) -> str:
    if not isinstance(v, str) or not HOST_RE.match(v):
        raise ValueError("a host name (the short name, as `hostname -s` prints it on that host)")
    return v


def _egress(v: Any) -> str:
    if v not in EGRESS:
        raise ValueError("none (the VLAN reaches nothing beyond itself) or nat")
    return str(v)


def _domain(v: Any) -> str | None:
    if v == "auto":
        return None
    if not isinstance(v, str) or not DOMAIN_RE.match(v):
        raise ValueError("auto or a DNS domain such as students.vx")
    return v


CHECKS: dict[str, Callable[[Any], Any]] = {
    "subnet": _subnet, "prefix6": _prefix6, "server": _server, "egress": _egress, "domain": _domain}
DEFAULTS: dict[str, Any] = {"prefix6": None, "egress": "none", "domain": None}


def parse_node(node: yaml.Node, path: Path) -> dict[str, VlanSpec]:
    """Check the `vlans:` mapping node; ConfigError with file and line on any mistake."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: vlans: expected a mapping of group name "
                          "(or gid) to its settings, e.g. `students: {subnet: 192.0.2.0/24, server: node1}`")
    out: dict[str, VlanSpec] = {}
    for key, value in node.value:
        name = str(_scalar(key))
        where = f"{path}:{key.start_mark.line + 1}"
        if name in out:
            raise ConfigError(f"{where}: vlans: {name} is given twice (line {out[name].line} too): keep one")
        out[name] = _parse_vlan(name, value, path, key.start_mark.line + 1)
    _check_overlaps(out, path)
    return out


def _parse_vlan(name: str, node: yaml.Node, path: Path, line: int) -> VlanSpec:
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}\$?|[0-9]+", name):
        raise ConfigError(f"{path}:{line}: vlans: {name!r} is not a group name or gid")
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{line}: vlans.{name}: expected its settings "
                          "(subnet, server, and optionally prefix6, egress, domain)")
    values = dict(DEFAULTS)
    for key, value in node.value:
        field = str(_scalar(key))
        where = f"{path}:{key.start_mark.line + 1}"
        if field not in CHECKS:
            raise ConfigError(f"{where}: vlans.{name}: unknown setting {field!r} "
                              f"(a VLAN has {', '.join(FIELDS)})")
        try:
            values[field] = CHECKS[field](_scalar(value))
        except (ValueError, yaml.YAMLError) as err:
            raise ConfigError(f"{where}: vlans.{name}.{field}: {_scalar(value)!r} is not allowed; "
                              f"expected {err}") from None
    missing = [f for f in ("subnet", "server") if f not in values]
    if missing:
        raise ConfigError(f"{path}:{line}: vlans.{name}: {' and '.join(missing)} missing; "
                          "e.g. subnet: 192.0.2.0/24, server: node1 (the host that runs the gateway)")
    return VlanSpec(key=name, line=line, **values)


def _check_overlaps(specs: dict[str, VlanSpec], path: Path) -> None:
    seen: list[VlanSpec] = []
    for spec in specs.values():
        for other in seen:
            if spec.subnet.overlaps(other.subnet):
                raise ConfigError(f"{path}:{spec.line}: vlans.{spec.key}.subnet {spec.subnet} overlaps "
                                  f"{other.subnet} of vlans.{other.key} (line {other.line}); give each "
                                  "VLAN a subnet of its own")
            if spec.prefix6 is not None and spec.prefix6 == other.prefix6:
                raise ConfigError(f"{path}:{spec.line}: vlans.{spec.key}.prefix6 {spec.prefix6} is also "
                                  f"the prefix of vlans.{other.key} (line {other.line}); give each VLAN its "
                                  "own /64 (or auto)")
        seen.append(spec)


def check_hosts(cfg: Config) -> None:
    """Every server must be one of `hosts:` (a typo would leave a VLAN unserved)."""
    hosts: list[str] = cfg["hosts"]
    for spec in cfg["vlans"].values():
        if spec.server not in hosts:
            known = ", ".join(hosts) if hosts else "none listed"
            raise ConfigError(f"{cfg.source}:{spec.line}: vlans.{spec.key}.server: {spec.server!r} is not "
                              f"one of hosts: ({known}); add it to hosts: or correct the name")


def resolve(cfg: Config, getgr: Callable[[str], grp.struct_group] = grp.getgrnam,
            getgid: Callable[[int], grp.struct_group] = grp.getgrgid) -> dict[int, Vlan]:
    """The served VLANs by gid; ConfigError (file, line) for a group NSS does not know."""
    out: dict[int, Vlan] = {}
    for spec in cfg["vlans"].values():
        entry = _group(spec, cfg.source, getgr, getgid)
        gid = entry.gr_gid
        if gid in out:
            raise ConfigError(f"{cfg.source}:{spec.line}: vlans.{spec.key} is gid {gid}, which another "
                              "entry already serves; keep one")
        if gid >= 1 << 24:
            raise ConfigError(f"{cfg.source}:{spec.line}: vlans.{spec.key}: gid {gid} has no VLAN "
                              "(VNIs are 24 bits: gids below 16777216)")
        prefix6 = spec.prefix6 or ula_prefix(gid)
        _check_prefix_unique(out, prefix6, spec, cfg.source)
        out[gid] = Vlan(gid=gid, group=entry.gr_name, subnet=spec.subnet, prefix6=prefix6,
                        server=spec.server, egress=spec.egress,
                        domain=spec.domain or default_domain(entry.gr_name))
    return out


def _group(spec: VlanSpec, source: str, getgr: Callable[[str], grp.struct_group],
           getgid: Callable[[int], grp.struct_group]) -> grp.struct_group:
    try:
        return getgid(int(spec.key)) if spec.key.isdigit() else getgr(spec.key)
    except KeyError:
        raise ConfigError(f"{source}:{spec.line}: vlans.{spec.key}: no such group; create it "
                          f"(addgroup {spec.key}) or correct the name") from None


def _check_prefix_unique(out: dict[int, Vlan], prefix6: ipaddress.IPv6Network, spec: VlanSpec,
                         source: str) -> None:
    for vlan in out.values():
        if vlan.prefix6 == prefix6:
            raise ConfigError(f"{source}:{spec.line}: vlans.{spec.key}: prefix6 {prefix6} is also the "
                              f"prefix of group {vlan.group}; give each VLAN its own /64")
