"""Who a login name is, and whether vxvdex manages them.

Fail closed on the directory: a managed group that does not resolve (an
LDAP server behind sssd that is down, a typo) is an error, never "not
managed", since os.getgrouplist quietly returns a partial list when a group
source fails and the user would land on the host network.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from vxvdex.config import Config, ConfigError


class DirectoryError(LookupError):
    """A user or group lookup failed: refuse rather than guess."""


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int              # primary group: the egid of the login shell, the VLAN
    groups: tuple[int, ...]


def lookup(name: str) -> User:
    """The user called name; KeyError if there is none."""
    pw = pwd.getpwnam(name)
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)))


def _is_gid(group: str) -> bool:
    return group.isascii() and group.isdigit()


def gid_of(group: str) -> int | None:
    """A configured group (name or number) as a gid; None if unknown here."""
    if _is_gid(group):
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def _group(group: str) -> grp.struct_group:
    """The managed group's entry; DirectoryError if it does not resolve."""
    try:
        return grp.getgrgid(int(group)) if _is_gid(group) else grp.getgrnam(group)
    except (KeyError, OverflowError):
        raise DirectoryError(f"managed group {group} does not resolve (group database or directory "
                             "down?): refusing every login until it does") from None


def is_managed(user: User, cfg: Config) -> bool:
    """Root never is; others when in one of the managed groups (primary,
    supplementary, or listed as a member). DirectoryError if any managed
    group cannot be looked up: who is managed cannot be known then."""
    if user.uid == 0:
        return False
    found = False
    for entry in (_group(g) for g in cfg["managed_groups"]):  # every one resolves, or none counts
        found = found or entry.gr_gid in user.groups or entry.gr_gid == user.gid or user.name in entry.gr_mem
    return found


def extra_gids(user: User, cfg: Config) -> list[int]:
    """Supplementary groups of the user that get a tap of their own."""
    gids = [gid_of(g) for g in cfg["extra_networks"]]
    return [g for g in gids if g is not None and g in user.groups and g != user.gid]


def check_host(cfg: Config) -> None:
    """What the file names must exist on this host; ConfigError with the fix."""
    where = cfg.where("managed_groups")
    for group in cfg["managed_groups"]:
        try:
            _group(group)
        except DirectoryError:
            what = f"no group {group}" if _is_gid(group) else f"no group '{group}'"
            raise ConfigError(f"{where}: managed_groups: {what} on this host (nobody in it would be "
                              f"managed); create it (`groupadd {group}`), fix the name, or give its gid"
                              + ("" if cfg.lines.get("managed_groups") else " (default)")) from None
    user = cfg["endpoint_user"]
    try:
        pwd.getpwnam(user)
    except KeyError:
        default = "" if cfg.lines.get("endpoint_user") else " (default)"
        raise ConfigError(f"{cfg.where('endpoint_user')}: endpoint_user: no user '{user}'{default}; "
                          "create it: adduser --system --group --no-create-home --home /nonexistent "
                          f"{user}") from None
