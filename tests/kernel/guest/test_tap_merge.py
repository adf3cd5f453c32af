"""vxvdex-plug's receive-side merging on this guest's Debian kernel.

UDP super-frames (USO, gso_type UDP_L4) exist since Linux 6.2: on 6.1 the
tap refuses the first one and the endpoint falls back to one write per
datagram, on 6.12 it takes them. The netns end-to-end test checks both
cases (every datagram intact and once, and merging as the kernel allows);
here it runs on the guest's kernel, which the host's cannot stand in for,
with 1000 datagrams per family instead of 4000: the kernel's answer to a
super-frame shows in the first ones, and this is the tier's longest test
(2 to 5 minutes in TCG on a loaded machine, a third to half of the tier).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_udp_bursts_end_to_end_on_this_kernel() -> None:
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(REPO / "tests" / "netns" / "test_udp_merge.py")],
                         cwd=REPO, env={**os.environ, "VXVDEX_UDP_MERGE_COUNT": "1000"},
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "2 passed" in res.stdout  # IPv4 and IPv6 inside the VLAN
