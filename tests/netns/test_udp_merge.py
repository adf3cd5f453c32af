"""Runs of UDP datagrams reach the namespace as one USO super-frame (Linux
6.2+), and the namespace's sockets still get every datagram, intact, once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from endpoints import addr, overlay, pings, plug
from lan import REPO, Lan
from observe import ip_counters, next_status, send_udp

UDPRECV = str(REPO / "tests" / "netns" / "udprecv.py")
# The kernel guests send fewer (tests/kernel/guest/test_tap_merge.py: TCG).
COUNT, SIZE = int(os.environ.get("VXVDEX_UDP_MERGE_COUNT", "4000")), 300
WINDOW = 400  # datagrams in flight: well below a tap's queue of 1000 frames


def uso_kernel() -> bool:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 2)


@pytest.mark.parametrize("inner", ["v4", "v6"])
def test_udp_bursts_arrive_whole_and_merged(lan: Lan, logs: Path, inner: str) -> None:
    status_file = logs / "status.json"
    v6 = inner == "v6"
    leaves = [lan.leaf(i, f"u{i}", plug("vxvde:///grp=1000", f"t{i}",
                                        *(("--status", str(status_file)) if i == 2 else ())),
                       [overlay(0, i, v6)], log=logs / f"plug{i}.log")[0] for i in (1, 2)]
    target = addr(overlay(0, 2, v6))
    assert pings(lan, leaves[0], target)
    before = next_status(status_file)["counters"]
    # Paced by the receiver (at most WINDOW unacknowledged): a burst paced by
    # the clock overran the 1000-frame tap queue whenever a loaded machine
    # left the endpoints without a core for a while.
    receiver = lan.spawn(leaves[1], sys.executable, UDPRECV, "5300", str(COUNT), "UDPM", str(SIZE),
                         "5", str(WINDOW // 4), capture=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    send_udp(lan, leaves[0], target, 5300, COUNT, b"UDPM", SIZE, window=WINDOW)
    result = json.loads(receiver.stdout.readline())
    receiver.wait(10)
    after = next_status(status_file)["counters"]
    # Where datagrams went missing, should they: the receiver's endpoint, or its namespace.
    where = {"endpoint": {k: v for k, v in after.items() if v != before.get(k)},
             "namespace": {k: v for k, v in ip_counters(lan, leaves[1]).items()
                           if k.startswith("Udp") and v}}
    assert result == {"intact": COUNT, "damaged": 0, "duplicates": 0}, where
    merged = after["rx_merged"] - before["rx_merged"]
    frames = after["rx_frames"] - before["rx_frames"]
    writes = after["tap_writes"] - before["tap_writes"]
    assert frames >= COUNT
    udp_merging = next_status(status_file)["udp_merging"]
    if uso_kernel():
        assert merged > COUNT // 4, f"only {merged} of {COUNT} datagrams went out in super-frames"
        assert writes < frames - merged // 2
        assert udp_merging
    else:
        assert merged == 0 and writes >= frames  # one write per datagram, after one refusal
        assert not udp_merging
