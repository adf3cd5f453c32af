"""vxvdex-plug against Debian's `vde_plug vxvde://` (vdeplug 4.0.1): the
reference implementation must see a peer like itself, in both directions,
over an IPv4 and an IPv6 underlay.

vde_plug 4.0.1 does take `/v6` here (group ff05:56de::<gid>): the v6 cases
check that the datagrams really crossed the LAN as IPv6."""

from __future__ import annotations

from pathlib import Path

import pytest
from endpoints import addr, overlay, pings, plug, transfer, vde_plug
from lan import Lan
from observe import ip_counters, mac_of, next_status


@pytest.mark.parametrize("underlay", ["v4", "v6"])
@pytest.mark.parametrize("ours_on", [1, 2], ids=["vxvdex-on-h1", "vxvdex-on-h2"])
def test_interoperates_with_vde_plug(lan: Lan, logs: Path, underlay: str, ours_on: int) -> None:
    url = "vxvde:///grp=1000" + ("/v6" if underlay == "v6" else "")
    theirs_on = 3 - ours_on
    status_file = logs / "status.json"
    leaves = {}
    for i in (1, 2):
        cmd = plug(url, f"t{i}", "--status", str(status_file)) if i == ours_on else vde_plug(url, f"t{i}")
        leaves[i], _proc = lan.leaf(i, f"u{i}", cmd, [overlay(0, i), overlay(0, i, v6=True)],
                                    log=logs / f"{'vxvdex' if i == ours_on else 'vde_plug'}{i}.log")
    before = {i: ip_counters(lan, lan.host(i)) for i in (1, 2)}

    for a, b in ((1, 2), (2, 1)):
        for v6 in (False, True):
            target = addr(overlay(0, b, v6))
            assert pings(lan, leaves[a], target), f"{leaves[a]} cannot ping {target}"
    # (Frames that came while the tap was still being moved and set up may have been
    # refused by it: count from here.)
    drops_before = next_status(status_file)["counters"]["drops"]
    # 50 MB from h1 to h2: in one case vxvdex sends them, in the other vde_plug.
    sent, got = transfer(lan, leaves[1], leaves[2], addr(overlay(0, 2)), 50 << 20)
    assert sent == got

    # It all went over the underlay asked for (the receiving side's datagrams
    # may be counted per GRO batch, the sender mostly gets merged ACKs).
    used, unused = ("Udp6InDatagrams", "UdpInDatagrams")[::1 if underlay == "v6" else -1]
    for i in (1, 2):
        after = ip_counters(lan, lan.host(i))
        assert after[used] - before[i][used] > 100, f"h{i}: too few {used}"
        assert after[unused] - before[i][unused] < 10, f"h{i}: {unused} on a {underlay} underlay"
    # Every datagram of vde_plug was taken as a frame (header byte for byte) and written, and
    # vde_plug's leaf learned at the address vde_plug sends from.
    their_mac = mac_of(lan, leaves[theirs_on], f"t{theirs_on}")
    host = lan.addr6(theirs_on) if underlay == "v6" else lan.addr4(theirs_on)
    data_frames = "tx_frames" if ours_on == 1 else "rx_frames"  # 50 MB: 36,000 frames or more
    st = next_status(status_file)
    assert st["counters"][data_frames] > 30_000 and st["counters"]["rx_frames"] > 100, st["counters"]
    drops = {name: n - drops_before[name] for name, n in st["counters"]["drops"].items() if name != "self"}
    assert {name: n for name, n in drops.items() if n} == {}
    learned = [p for p in st["peers"] if p["mac"] == their_mac]
    assert len(learned) == 1 and learned[0]["address"] == host, st["peers"]
