"""network.uplink and network.ttl against af_vxvdex's ifindex and maxttl
(issue 15 item 2): endpoints that use the kernel module send and join where
the module says; the daemon names every disagreement at start, with the fix.
A fake parameters directory stands in for /sys/module/af_vxvdex/parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from vxvdex import modparams
from vxvdex.config import parse

P = Path("/etc/vxvdex/vxvdex.yaml")
INDEX = {"eth0": 2, "eth1": 3}


def params(tmp_path: Path, ifindex: int, maxttl: int) -> Path:
    (tmp_path / "ifindex").write_text(f"{ifindex}\n")
    (tmp_path / "maxttl").write_text(f"{maxttl}\n")
    return tmp_path


def problems(text: str, directory: Path) -> list[str]:
    return modparams.disagreements(parse(text, P), directory, INDEX.__getitem__)


def test_module_not_loaded_is_no_problem(tmp_path: Path) -> None:
    assert problems("network:\n  uplink: eth1\n  ttl: 9\n", tmp_path / "absent") == []


@pytest.mark.parametrize(("text", "ifindex", "maxttl"), [
    ("", 0, 1), ("network:\n  uplink: eth1\n", 3, 1), ("network:\n  ttl: 4\n", 0, 8)])
def test_agreeing_settings_pass(tmp_path: Path, text: str, ifindex: int, maxttl: int) -> None:
    assert problems(text, params(tmp_path, ifindex, maxttl)) == []


def test_uplink_other_than_the_modules_ifindex(tmp_path: Path) -> None:
    (found,) = problems("network:\n  uplink: eth1\n", params(tmp_path, 2, 1))
    assert "network.uplink" in found and "eth1" in found and "ifindex 2" in found
    assert "echo 3 > " in found and "options af_vxvdex ifindex=3" in found


def test_routing_but_the_module_is_pinned_to_an_interface(tmp_path: Path) -> None:
    (found,) = problems("", params(tmp_path, 2, 1))
    assert "network.uplink is null" in found and "ifindex 2" in found and "ifindex=0" in found


def test_ttl_above_the_modules_maxttl(tmp_path: Path) -> None:
    (found,) = problems("network:\n  ttl: 4\n", params(tmp_path, 0, 1))
    assert "network.ttl is 4" in found and "maxttl 1" in found and "maxttl=4" in found
