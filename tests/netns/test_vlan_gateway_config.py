"""A bad `vlans:` section stops vxvdexd at its start, with the file, the
line and the fix, before anything is made (end to end: the daemon's own
start, not the parser alone; tests/unit/test_vlans.py has the details)."""

from __future__ import annotations

import grp
from pathlib import Path

import pytest
from lan import sh, tool

GROUP = grp.getgrgid(0).gr_name  # a group every machine has

BAD = [
    ("overlapping subnets",
     f"hosts: [h1]\nvlans:\n  {GROUP}: {{subnet: 192.0.2.0/25, server: h1}}\n"
     "  '65534': {subnet: 192.0.2.64/26, server: h1}\n", 4, "give each VLAN a subnet of its own"),
    ("a prefix that is not a /64",
     f"hosts: [h1]\nvlans:\n  {GROUP}:\n    subnet: 192.0.2.0/24\n    server: h1\n"
     "    prefix6: 2001:db8:1::/56\n", 6, "2001:db8:1::/64"),
    ("an unknown host",
     f"hosts: [h1, h2]\nvlans:\n  {GROUP}: {{subnet: 192.0.2.0/24, server: h9}}\n", 3,
     "add it to hosts: or correct the name"),
    ("an unknown group",
     "hosts: [h1]\nvlans:\n  nosuchgroupvx: {subnet: 192.0.2.0/24, server: h1}\n", 3,
     "create it (addgroup nosuchgroupvx) or correct the name"),
]


@pytest.mark.parametrize(("what", "text", "line", "fix"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_vlans_section_is_refused_at_start(tmp_path: Path, what: str, text: str, line: int,
                                                 fix: str) -> None:
    cfg = tmp_path / "vxvdex.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\nmanaged_groups: [{GROUP}]\nport_guard: false\n" + text)
    # In a network namespace of its own: a daemon that wrongly started would touch nothing.
    res = sh("unshare", "--net", tool("vxvdexd"), "--config", str(cfg), "--host-name", "h1", "--state-dir",
             str(tmp_path / "state"), check=False, timeout=10)
    assert res.returncode == 2, f"{what}: {res.stdout}{res.stderr}"
    message = res.stderr.strip()
    assert message.startswith(f"vxvdexd: {cfg}:{line + 3}: "), message
    assert fix in message and "Traceback" not in message
    assert len(message.splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists(), "nothing made"
