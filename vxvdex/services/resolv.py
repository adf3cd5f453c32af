"""/etc/netns/NAME/resolv.conf: a served namespace's resolver is its gateway.

`ip netns exec` and pam_vxvdex bind-mount the files of /etc/netns/NAME over
/etc in the login's mount namespace, so the session resolves through the
VLAN's dnsmasq while the host keeps its own resolv.conf. Only root writes
here (the directory and file are root's, never followed through a link).
"""

from __future__ import annotations

import os
from pathlib import Path

from vxvdex.services.vlans import Vlan

ETC_NETNS = Path("/etc/netns")


def text(served: list[Vlan]) -> str:
    """The file for a namespace on these VLANs (vde0's first): their domains
    searched, their gateways asked (at most three: the resolver's limit)."""
    lines = ["# written by vxvdexd: the VLAN's gateway resolves names"]
    lines.append("search " + " ".join(dict.fromkeys(v.domain for v in served)))
    lines += [f"nameserver {v.gateway4}" for v in served[:3]]
    return "\n".join(lines) + "\n"


def write(name: str, served: list[Vlan], etc_netns: Path = ETC_NETNS) -> None:
    """Create or replace /etc/netns/name/resolv.conf (atomically)."""
    etc_netns.mkdir(mode=0o755, exist_ok=True)
    folder = etc_netns / name
    try:
        folder.mkdir(mode=0o755)
    except FileExistsError:
        if folder.is_symlink() or not folder.is_dir():
            folder.unlink()  # not ours: only root writes here, but never follow it
            folder.mkdir(mode=0o755)
    tmp = folder / ".resolv.conf.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text(served).encode())
    finally:
        os.close(fd)
    tmp.replace(folder / "resolv.conf")


def remove(name: str, etc_netns: Path = ETC_NETNS) -> None:
    """Remove what write() made (the folder only if nothing else is in it)."""
    folder = etc_netns / name
    (folder / "resolv.conf").unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
