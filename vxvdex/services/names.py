"""The names of gateway namespaces, and how to tell them from users' ones.

A gateway namespace is named like the users' (the literal part of
netns_name before its first placeholder) plus gw-<gid>: vxvdex-gw-1234 by
default. The session manager skips these pins when it looks for users'.
"""

from __future__ import annotations

import re

from vxvdex.config import Config


def _prefix(cfg: Config) -> str:
    template: str = cfg["netns_name"]
    return template.split("{", 1)[0]


def gateway_name(cfg: Config, gid: int) -> str:
    return f"{_prefix(cfg)}gw-{gid}"


def gateway_pattern(cfg: Config) -> re.Pattern[str]:
    """Matches gateway namespace names; group 1 is the gid."""
    return re.compile(re.escape(_prefix(cfg)) + r"gw-([0-9]{1,8})")
