"""Full 1514-byte frames (tap MTU 1500) cross the VLAN whole.

On an underlay of MTU 1500 their datagrams (1514 + 8 + UDP + IP) are too big
for one packet: the host's IP layer fragments them and the other host
reassembles them. On a jumbo underlay (MTU 9000) nothing is fragmented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from capture import Capture
from endpoints import addr, overlay, pings, plug, transfer
from lan import Lan
from observe import ip_counters

PINGS = 5


@pytest.mark.parametrize("underlay", ["v4", "v6"])
@pytest.mark.parametrize("lan_mtu", [1500, 9000])
def test_full_size_frames_are_delivered_whole(logs: Path, lan_mtu: int, underlay: str) -> None:
    url = "vxvde:///grp=1000" + ("/v6" if underlay == "v6" else "")
    frag_key = "Ip6FragCreates" if underlay == "v6" else "IpFragCreates"
    reasm_key = "Ip6ReasmOKs" if underlay == "v6" else "IpReasmOKs"
    with Lan(hosts=2, mtu=lan_mtu) as lan:
        leaves = {i: lan.leaf(i, f"u{i}", plug(url, f"t{i}"), [overlay(0, i), overlay(0, i, v6=True)],
                              mtu=1500, log=logs / f"plug{i}.log")[0] for i in (1, 2)}
        assert pings(lan, leaves[1], addr(overlay(0, 2)))
        assert pings(lan, leaves[1], addr(overlay(0, 2, v6=True)))
        before = {i: ip_counters(lan, lan.host(i)) for i in (1, 2)}
        cap = Capture(lan, leaves[2], "t2", logs / "t2.cap")

        # 1472 + 8 (ICMP) + 20 (IPv4) and 1452 + 8 + 40 (IPv6): 1500-byte packets, 1514-byte frames,
        # never fragmented inside the VLAN (-M do).
        for target, size in ((addr(overlay(0, 2)), 1472), (addr(overlay(0, 2, v6=True)), 1452)):
            res = lan.run(leaves[1], "ping", "-c", str(PINGS), "-i", "0.1", "-W", "2", "-M", "do",
                          "-s", str(size), target, check=False)
            assert res.returncode == 0, res.stdout + res.stderr
            assert len(re.findall(rf"^{size + 8} bytes from", res.stdout, re.M)) == PINGS, res.stdout
        # Full-size TCP segments too (MSS 1460 / 1440), both ways.
        for a, b in ((1, 2), (2, 1)):
            sent, got = transfer(lan, leaves[a], leaves[b], addr(overlay(0, b)), 5 << 20)
            assert sent == got
        frames = cap.stop()
        after = {i: ip_counters(lan, lan.host(i)) for i in (1, 2)}

    # The echo requests reached h2's leaf as single 1514-byte frames.
    echo = [f for f in frames if f.incoming and f.length == 1514 and f.ip() is not None
            and f.ip()[2] in (1, 58)]  # type: ignore[index]
    assert len(echo) >= 2 * PINGS
    created = {i: after[i][frag_key] - before[i][frag_key] for i in (1, 2)}
    if lan_mtu == 1500:
        # Both hosts had to fragment (pings and data one way, replies and data the other way)
        # and the other host put the pieces back together.
        assert created[1] >= 2 * PINGS and created[2] >= 2 * PINGS, created
        assert after[2][reasm_key] - before[2][reasm_key] >= 2 * PINGS
    else:
        for i in (1, 2):
            assert {k: after[i][k] - before[i][k] for k in ("IpFragCreates", "Ip6FragCreates",
                                                           "IpReasmReqds", "Ip6ReasmReqds")} \
                == dict.fromkeys(("IpFragCreates", "Ip6FragCreates", "IpReasmReqds", "Ip6ReasmReqds"), 0)
