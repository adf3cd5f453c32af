"""/etc/vxvdex/vxvdex.yaml: one table of settings, checked with file and line.

Every setting is declared once in SETTINGS (its path, default, checker and
what it accepts); the loader walks the YAML node tree so that every refusal
names the file, the line, the setting, what is wrong and what is allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path("/etc/vxvdex/vxvdex.yaml")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# What a frame carries on the underlay: Ethernet 14 + vxvde 8 + UDP 8 + IP.
OVERHEAD = {4: 14 + 8 + 8 + 20, 6: 14 + 8 + 8 + 40}


class ConfigError(ValueError):
    """An invalid configuration; str() is the one-line message with the fix."""


Check = Callable[[Any], Any]


def _enum(*allowed: str) -> Check:
    def check(v: Any) -> Any:
        if v not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return v
    return check


def _int(low: int, high: int) -> Check:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ValueError(f"an integer from {low} to {high}")
        return v
    return check


def _choice(*allowed: int) -> Check:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or v not in allowed:
            raise ValueError(" or ".join(map(str, allowed)))
        return v
    return check


def _groups(v: Any) -> Any:
    if not isinstance(v, list) or not v or not all(isinstance(g, (str, int)) and not isinstance(g, bool)
                                                   for g in v):
        raise ValueError("a non-empty list of group names or gids, e.g. [vxvdex]")
    return [str(g) for g in v]


def _extra(v: Any) -> Any:
    if not isinstance(v, list) or not all(isinstance(g, (str, int)) and not isinstance(g, bool) for g in v):
        raise ValueError("a list of group names or gids (one more tap for each the user is in)")
    return [str(g) for g in v]


def _name(v: Any) -> Any:
    if not isinstance(v, str) or not NAME_RE.match(v):
        raise ValueError("a user or group name (lowercase letters, digits, _ . -)")
    return v


def _ifname(v: Any) -> Any:
    if not isinstance(v, str) or not IFNAME_RE.match(v):
        raise ValueError("an interface name of 1-15 letters, digits, _ . -")
    return v


def _opt_ifname(v: Any) -> Any:
    return None if v is None else _ifname(v)


def _mtu(v: Any) -> Any:
    try:
        return "auto" if v == "auto" else _int(576, 65535)(v)
    except ValueError:
        raise ValueError("auto or an integer from 576 to 65535") from None


def _prefix(v: Any) -> Any:
    try:
        addr = ipaddress.ip_address(str(v))
    except ValueError:
        raise ValueError("a multicast address such as 239.0.0.0 or ff05:56de::") from None
    if not addr.is_multicast:
        raise ValueError("a multicast address such as 239.0.0.0 or ff05:56de::")
    return addr


def _template(v: Any) -> Any:
    if not isinstance(v, str) or "{user}" not in v or not re.fullmatch(r"[A-Za-z0-9_.{}-]+", v):
        raise ValueError("a name containing {user} (and optionally {session}), e.g. vxvdex-{user}")
    try:
        fields = [(f, spec, conv) for _t, f, spec, conv in string.Formatter().parse(v) if f is not None]
    except ValueError:  # an unmatched brace
        fields = [("{", "", None)]
    bad = [f for f, spec, conv in fields if f not in ("user", "session") or spec or conv]
    if bad:
        # str.format would raise KeyError at every login: refuse it here.
        raise ValueError(f"only {{user}} and {{session}} as placeholders (not {{{bad[0]}}}), "
                         "e.g. vxvdex-{user}")
    return v


def _path(v: Any) -> Any:
    if not isinstance(v, str) or not v.startswith("/"):
        raise ValueError("an absolute path")
    return Path(v)


def _bool(v: Any) -> Any:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _hosts(v: Any) -> Any:
    if not isinstance(v, list) or not all(isinstance(h, str) and re.fullmatch(
            r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", h) for h in v):
        raise ValueError("a list of short host names, e.g. [node1, node2, node3]")
    return list(v)


def _vlans_node(node: yaml.Node, path: Path) -> Any:
    from vxvdex.services import vlans  # imported here: vlans uses ConfigError from this module
    return vlans.parse_node(node, path)


def _remove_after(v: Any) -> Any:
    return _int(0, 86400 * 30)(v)  # null once passed here and broke the collector


@dataclass(frozen=True)
class Setting:
    path: str
    default: Any
    check: Check
    doc: str
    # A section checked on its YAML node, so that its errors name their own lines.
    node_check: Callable[[yaml.Node, Path], Any] | None = None


SETTINGS = [
    Setting("managed_groups", ["vxvdex"], _groups, "members of any of these groups get a namespace"),
    Setting("scope", "user", _enum("user", "session"), "one namespace per user, or one per session"),
    Setting("netns_name", "vxvdex-{user}", _template, "the name under /run/netns"),
    Setting("interface.name", "vde0", _ifname, "the tap inside the namespace"),
    Setting("interface.mtu", "auto", _mtu, "auto = underlay MTU minus 50 (IPv4) or 70 (IPv6)"),
    Setting("network.port", 14789, _int(1, 65535), "UDP port of the groups"),
    Setting("network.ip_version", 4, _choice(4, 6), "4 or 6 for the underlay"),
    Setting("network.group_prefix", None, lambda v: None if v is None else _prefix(v),
            "group address whose last 3 bytes become the gid"),
    Setting("network.uplink", None, _opt_ifname, "interface for multicast, null = routing"),
    Setting("network.ttl", 1, _int(1, 255), "multicast TTL"),
    Setting("extra_networks", [], _extra, "supplementary groups that get one more tap each"),
    Setting("after_logout", "keep", _enum("keep", "remove"), "what to do once no process is left"),
    Setting("remove_after", 60, _remove_after, "seconds to wait before removing"),
    Setting("max_sessions", 64, _int(1, 100000), "open sessions of one user; more logins are refused"),
    Setting("run_dir", "/run/vxvdex", _path, "control socket and state"),
    Setting("endpoint_user", "vxvdex-endpoint", _name, "unprivileged system user of endpoints"),
    Setting("port_guard", True, _bool, "only root and endpoints may use the vxvde port (nftables)"),
    Setting("log_level", "info", _enum("debug", "info", "warning", "error"), "daemon log level"),
    Setting("hosts", [], _hosts, "the cluster's host names (every vlans server must be one)"),
    Setting("vlans", {}, lambda v: v, "served VLANs: group -> subnet, prefix6, server, egress, domain",
            node_check=_vlans_node),
]
_BY_PATH = {s.path: s for s in SETTINGS}


@dataclass
class Config:
    values: dict[str, Any] = field(default_factory=lambda: {s.path: s.check(s.default) for s in SETTINGS})
    source: str = "(defaults)"
    lines: dict[str, int] = field(default_factory=dict)   # setting -> line in the file

    def __getitem__(self, path: str) -> Any:
        return self.values[path]

    def where(self, path: str) -> str:
        """FILE:LINE of a setting given in the file; FILE alone for a default."""
        line = self.lines.get(path)
        return f"{self.source}:{line}" if line else self.source

    def tap_mtu(self, underlay: int) -> int:
        """The tap's MTU: the configured one, or (auto) what fits one underlay packet."""
        if self["interface.mtu"] != "auto":
            return int(self["interface.mtu"])
        return underlay - OVERHEAD[self["network.ip_version"]]

    def netns_name(self, user: str, session: str = "") -> str:
        """The namespace's name. A session enters as a token of fixed width, so
        that no (user, session) pair gets another's name whatever the strings
        ("al" + "x-ssh-1" and "al-x" + "ssh-1" once met in "al-x-ssh-1")."""
        token = session_token(session) if session else ""
        name: str = self["netns_name"].format(user=user, session=token)
        if self["scope"] == "session" and "{session}" not in self["netns_name"]:
            name = f"{name}-{token}"
        return name


def session_token(session: str) -> str:
    """12 hex digits naming a session in namespace names (collisions: 2^-48)."""
    return hashlib.sha256(session.encode()).hexdigest()[:12]


def _flatten(node: yaml.Node, prefix: str, out: dict[str, yaml.Node], path: Path) -> None:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: expected a mapping of settings")
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise ConfigError(f"{path}:{key.start_mark.line + 1}: a setting name must be a plain word")
        name = f"{prefix}{key.value}"
        if name in out:
            raise ConfigError(f"{path}:{key.start_mark.line + 1}: {name} is set twice (line "
                              f"{out[name].start_mark.line + 1} too): keep one")
        if isinstance(value, yaml.MappingNode) and any(s.startswith(name + ".") for s in _BY_PATH):
            _flatten(value, name + ".", out, path)
        else:
            out[name] = value


def _unknown(name: str) -> str:
    close = [s for s in _BY_PATH if s.split(".")[-1] == name.split(".")[-1] or s.startswith(name)]
    sections = {s.split(".")[0] for s in _BY_PATH}
    close += difflib.get_close_matches(name, [*_BY_PATH, *sections], n=1)
    return f"did you mean {close[0]}?" if close else "see the comments in the shipped file"


def parse(text: str, path: Path) -> Config:
    """Parse and check a configuration text; raise ConfigError naming file and line."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {getattr(err, 'problem', err)}") from None
    cfg = Config(source=str(path))
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        return cfg  # no settings at all (also a lone `---`): the defaults
    nodes: dict[str, yaml.Node] = {}
    _flatten(root, "", nodes, path)
    for name, node in nodes.items():
        where = f"{path}:{node.start_mark.line + 1}"
        setting = _BY_PATH.get(name)
        if setting is None:
            raise ConfigError(f"{where}: unknown setting '{name}' ({_unknown(name)})")
        cfg.lines[name] = node.start_mark.line + 1
        if setting.node_check is not None:
            cfg.values[name] = setting.node_check(node, path)
            continue
        try:
            value = yaml.safe_load(yaml.serialize(node))
        except yaml.YAMLError as err:  # e.g. a !!python/... tag: never constructed
            raise ConfigError(f"{where}: {name}: not allowed: {getattr(err, 'problem', err)}") from None
        try:
            cfg.values[name] = setting.check(value)
        except ValueError as err:
            raise ConfigError(f"{where}: {name}: {value!r} is not allowed; expected {err}") from None
        cfg.lines[name] = node.start_mark.line + 1
    _check_prefix_family(cfg)
    from vxvdex.services import vlans
    vlans.check_hosts(cfg)
    return cfg


def _check_prefix_family(cfg: Config) -> None:
    prefix = cfg["network.group_prefix"]
    version = cfg["network.ip_version"]
    if prefix is not None and prefix.version != version:
        example = "ff05:56de::" if version == 6 else "239.0.0.0"
        raise ConfigError(f"{cfg.where('network.group_prefix')}: network.group_prefix: {prefix} is an "
                          f"IPv{prefix.version} address but network.ip_version is {version}; give an "
                          f"IPv{version} group such as {example} (or change network.ip_version)")


def load(path: Path = DEFAULT_PATH) -> Config:
    """Load the file at path (defaults if it does not exist)."""
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text; save the file as UTF-8") from None
    except FileNotFoundError:
        return Config(source=f"{path} (missing: defaults)")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    return parse(text, path)
