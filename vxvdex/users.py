"""Who a login name is, and whether vxvdex manages them."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from .config import Config


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


def gid_of(group: str) -> int | None:
    """A configured group (name or number) as a gid; None if unknown here."""
    if group.isascii() and group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def is_managed(user: User, cfg: Config) -> bool:
    """Root never is; others when in one of the managed groups."""
    if user.uid == 0:
        return False
    managed = {gid_of(g) for g in cfg["managed_groups"]} - {None}
    return bool(managed.intersection(user.groups))


def extra_gids(user: User, cfg: Config) -> list[int]:
    """Supplementary groups of the user that get a tap of their own."""
    gids = [gid_of(g) for g in cfg["extra_networks"]]
    return [g for g in gids if g is not None and g in user.groups and g != user.gid]
