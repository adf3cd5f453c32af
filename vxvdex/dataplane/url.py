"""vdeplug4 URLs: `vxvde://[ADDRESS][/opt=value]...` and `vxvdex://...`.

Parsed the way vdeplug4's vde_parseparms does it (quotes, backslash escapes,
option names abbreviable to any prefix, first match in table order), but
every value is checked: where vdeplug4 silently falls back to a default we
refuse with a message that names the option and what it accepts.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from vxvdex.dataplane import wire

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Table order matters: an abbreviated option takes the first name it prefixes.
OPTIONS = (
    "port", "vni", "grp", "ttl", "rcvbuf", "v6", "v4",
    "hashsize", "expiretime", "if", "bind",
)
SCHEMES = ("vxvde", "vxvdex")
_SIZE_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class UrlError(ValueError):
    """A URL that cannot be used; the message says what is allowed."""


@dataclass(frozen=True)
class VxvdeUrl:
    """Everything an endpoint needs to join one VLAN."""

    scheme: str
    group: IPAddress
    port: int = wire.PORT
    vni: int = wire.DEFAULT_VNI
    ttl: int = wire.DEFAULT_TTL
    rcvbuf: int | None = None
    hashsize: int = wire.HASHSIZE
    expiretime: int = wire.EXPIRE_SECONDS
    ifname: str | None = None
    bind: IPAddress | None = None

    @property
    def family(self) -> int:
        return socket.AF_INET6 if self.group.version == 6 else socket.AF_INET

    @property
    def kernel_pinned(self) -> bool:
        """vxvdex:// asks for AF_VXVDEX: the kernel fixes the VLAN to our egid."""
        return self.scheme == "vxvdex"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.group}/port={self.port}/vni={self.vni}"


def split_quoted(text: str, delim: str = "/") -> list[str]:
    """Split like vdeplug4's strtokq_r: '..' and ".." quote, backslash escapes."""
    parts, cur, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            else:
                cur.append(ch)
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            cur.append(text[i])
        elif ch in "'\"":
            quote = ch
        elif ch == delim:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _option_name(tag: str) -> str:
    for name in OPTIONS:
        if name.startswith(tag):
            return name
    raise UrlError(f"unknown option '{tag}': allowed are {', '.join(OPTIONS)}")


def parse_options(elems: list[str]) -> dict[str, str]:
    """Map full option names to their raw values ("" for flags like /v6)."""
    found: dict[str, str] = {}
    for elem in elems:
        tag, eq, value = elem.partition("=")
        if tag:
            found[_option_name(tag)] = value if eq else ""
    return found


def gid_of(name: str, option: str) -> int:
    """vdeplug4's grnam2gid: "" is our egid, digits a number, else a group name."""
    try:
        if name == "":
            return wire.check_id(os.getegid(), option)
        if name.isascii() and name.isdigit():  # int() refuses some of str.isdigit's digits
            return wire.check_id(int(name), option)
        return wire.check_id(grp.getgrnam(name).gr_gid, option)
    except KeyError:
        raise UrlError(f"{option}={name}: no such group (give a gid or a group name)") from None
    except wire.WireError as err:
        raise UrlError(f"{option}={name}: {err}") from None


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        number = -1
    if not low <= number <= high:
        raise UrlError(f"{name}={value!r}: must be an integer from {low} to {high}")
    return number


def size_value(name: str, value: str) -> int:
    """A byte count with optional k/M/G/T suffixes, as vdeplug4's strtoullm."""
    digits = value.rstrip("kKmMgGtT")
    size = int(digits) if digits.isascii() and digits.isdigit() else 0
    for ch in value[len(digits):]:
        size *= _SIZE_SUFFIX[ch.lower()]
    if not 1 <= size <= 1 << 31:
        raise UrlError(f"{name}={value!r}: must be a byte count up to 2G, like 4194304, 4096k or 4M")
    return size


def _address(text: str, name: str, v6: bool | None) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    family = {None: 0, True: socket.AF_INET6, False: socket.AF_INET}[v6]
    try:
        info = socket.getaddrinfo(text, None, family, socket.SOCK_DGRAM)
    except socket.gaierror as err:
        raise UrlError(f"{name} '{text}': {err.strerror} (give an IP address)") from None
    return ipaddress.ip_address(info[0][4][0])


def _family_choice(opts: dict[str, str]) -> bool | None:
    """True for IPv6, False for IPv4, None when both or neither were asked."""
    if ("v6" in opts) == ("v4" in opts):
        return None
    return "v6" in opts


def _group(addr_text: str, opts: dict[str, str], gid: int | None) -> IPAddress:
    v6 = _family_choice(opts)
    if addr_text:
        group = _address(addr_text, "address", v6)
    else:
        group = wire.GROUP_V6 if v6 else wire.GROUP_V4
    if v6 is not None and (group.version == 6) != v6:
        raise UrlError(f"address {group} is not IPv{6 if v6 else 4} as /v{6 if v6 else 4} asks")
    if not group.is_multicast:
        raise UrlError(f"address {group} is not a multicast group (use 239.0.0.0/8 or ff05::/16)")
    return wire.with_id_tail(group, gid) if gid is not None else group


_VALUE_CHECKS: dict[str, Callable[[str, str], object]] = {
    "port": lambda n, v: _int(n, v, 1, 65535),
    "ttl": lambda n, v: _int(n, v, 0, 255),
    "rcvbuf": size_value,
    "hashsize": lambda n, v: _int(n, v, 1, 1 << 20),
    "expiretime": lambda n, v: _int(n, v, 1, 1 << 30),
}


def parse(url: str) -> VxvdeUrl:
    """Parse a vxvde:// or vxvdex:// URL; raise UrlError saying what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise UrlError(f"'{url}': expected vxvde://[ADDRESS][/opt=value]... or vxvdex://...")
    addr_text, *elems = split_quoted(rest)
    opts = parse_options(elems)
    values = {k: check(k, opts[k]) for k, check in _VALUE_CHECKS.items() if k in opts}
    gid = gid_of(opts["grp"], "grp") if "grp" in opts else None
    if scheme == "vxvdex" and gid is None:
        gid = gid_of("", "egid")
    vni = gid_of(opts["vni"], "vni") if "vni" in opts else gid
    bind = _address(opts["bind"], "bind", None) if opts.get("bind") else None
    return VxvdeUrl(
        scheme=scheme,
        group=_group(addr_text, opts, gid),
        vni=wire.DEFAULT_VNI if vni is None else vni,
        ifname=opts.get("if") or None,
        bind=bind,
        **values,  # type: ignore[arg-type]
    )


def tap_name(url: str) -> str:
    """The interface name of a `tap://IFNAME` URL."""
    scheme, sep, name = url.partition("://")
    if scheme != "tap" or not sep:
        raise UrlError(f"'{url}': expected tap://IFNAME")
    # The kernel's limits (dev_valid_name): 15 bytes, no '/', ':' or white space.
    if (not 0 < len(name.encode()) < 16 or "/" in name or ":" in name or name in (".", "..")
            or any(c.isspace() for c in name)):
        raise UrlError(f"tap://{name}: interface names are 1-15 bytes, no '/', ':' or spaces")
    return name
