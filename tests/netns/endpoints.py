"""Starting endpoints on the simulated LAN and checking what crosses it."""

from __future__ import annotations

import sys
from pathlib import Path

from lan import REPO, Lan, tool

TRANSFER = str(REPO / "tests" / "netns" / "transfer.py")


def plug(url: str, tap: str, *extra: str) -> list[str]:
    """vxvdex-plug, our endpoint."""
    return [tool("vxvdex-plug"), *extra, url, f"tap://{tap}"]


def vde_plug(url: str, tap: str) -> list[str]:
    """Debian's vde_plug (package vdeplug), the reference implementation."""
    return ["vde_plug", url, f"tap://{tap}"]


def overlay(net: int, host: int, v6: bool = False) -> str:
    """Leaf addresses: 198.51.100+net.host/24 and 2001:db8:1:net::host/64."""
    return f"2001:db8:1:{net}::{host}/64" if v6 else f"198.51.{100 + net}.{host}/24"


def addr(cidr: str) -> str:
    return cidr.split("/")[0]


def pings(lan: Lan, ns: str, target: str, count: int = 3, timeout: float = 2) -> bool:
    """True if `count` pings from ns to target are all answered (first may warm ARP)."""
    lan.run(ns, "ping", "-c1", "-W", str(timeout), target, check=False)
    res = lan.run(ns, "ping", "-c", str(count), "-i", "0.1", "-W", str(timeout), target, check=False)
    return res.returncode == 0


def transfer(lan: Lan, src: str, dst: str, target: str, size: int, seed: int = 1) -> tuple[str, str]:
    """Send `size` bytes over TCP from ns src to target (in ns dst); both digests."""
    server = lan.spawn(dst, sys.executable, TRANSFER, "serve", "5001", capture=True)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "listening"
    sent = lan.run(src, sys.executable, TRANSFER, "send", target, "5001", str(size), str(seed),
                   timeout=120).stdout.split()[0]
    got = server.stdout.readline().split()
    server.wait(30)
    return sent, got[0] if got else "nothing received"


def log_of(logs: Path, name: str) -> Path:
    return logs / f"{name}.log"
