"""The daemon's network settings against af_vxvdex's module parameters.

Endpoints whose transport is AF_VXVDEX send and join multicast where the
module says (its `ifindex`, 0 = routing) with at most its `maxttl`, whatever
network.uplink and network.ttl say. The daemon does not override the
administrator's module options; it names every disagreement at start, with
the two ways to fix it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from vxvdex.config import Config

PARAMETERS = Path("/sys/module/af_vxvdex/parameters")


def _read(directory: Path, name: str) -> int | None:
    try:
        return int((directory / name).read_text().strip())
    except (OSError, ValueError):
        return None


def disagreements(cfg: Config, directory: Path = PARAMETERS,
                  index_of: Callable[[str], int] = socket.if_nametoindex) -> list[str]:
    """One line per setting the loaded module overrides (none if it is not loaded)."""
    ifindex, maxttl = _read(directory, "ifindex"), _read(directory, "maxttl")
    found = []
    uplink = cfg["network.uplink"]
    if ifindex is not None:
        try:
            wanted = index_of(uplink) if uplink else 0
        except OSError:
            wanted = -1  # an uplink that does not exist: underlay_mtu() says so already
        if wanted >= 0 and wanted != ifindex:
            said = f"network.uplink is {uplink} (ifindex {wanted})" if uplink else \
                "network.uplink is null (the routing table)"
            found.append(f"{cfg.where('network.uplink')}: {said} but af_vxvdex sends and joins on ifindex "
                         f"{ifindex} for endpoints that use it; make them agree: `echo {wanted} > "
                         f"{directory}/ifindex` and `options af_vxvdex ifindex={wanted}` in "
                         "/etc/modprobe.d/vxvdex.conf, or change network.uplink")
    if maxttl is not None and cfg["network.ttl"] > maxttl:
        ttl = cfg["network.ttl"]
        found.append(f"{cfg.where('network.ttl')}: network.ttl is {ttl} but af_vxvdex caps it at maxttl "
                     f"{maxttl}; make them agree: `echo {ttl} > {directory}/maxttl` and `options "
                     f"af_vxvdex maxttl={ttl}` in /etc/modprobe.d/vxvdex.conf, or lower network.ttl")
    return found
