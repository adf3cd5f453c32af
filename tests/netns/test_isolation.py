"""Two VLANs on the same hosts never exchange a frame: gid 1000 and gid 1001
both have an endpoint on h1 and on h2; floods of broadcasts and of unicast
on each VLAN are counted on every tap of both."""

from __future__ import annotations

import time
from pathlib import Path

from capture import Capture, carried, incoming_with
from endpoints import addr, overlay, pings, plug
from lan import Lan
from observe import mac_of, next_status, peer_macs, send_udp

GIDS = {1000: 0, 1001: 1}       # gid -> overlay subnet (198.51.100/24, 198.51.101/24)
FLOOD = 300


def test_vlans_of_two_gids_never_mix(lan: Lan, logs: Path) -> None:
    taps = {(gid, i): f"g{gid}h{i}" for gid in GIDS for i in (1, 2)}
    st = {key: logs / f"{tap}.json" for key, tap in taps.items()}
    leaves = {}
    for (gid, i), tap in taps.items():
        cmd = plug(f"vxvde:///grp={gid}", tap, "--status", str(st[gid, i]))
        leaves[gid, i] = lan.leaf(i, tap, cmd, [overlay(GIDS[gid], i)], log=logs / f"{tap}.log")[0]
    macs = {key: mac_of(lan, leaves[key], tap) for key, tap in taps.items()}
    for gid in GIDS:  # each VLAN works (and ARP is settled before the floods)
        assert pings(lan, leaves[gid, 1], addr(overlay(GIDS[gid], 2)))

    caps = {key: Capture(lan, leaves[key], tap, logs / f"{tap}.cap") for key, tap in taps.items()}
    for gid, net in GIDS.items():
        marker = b"VXVLAN%d" % gid
        for i in (1, 2):
            send_udp(lan, leaves[gid, i], f"198.51.{100 + net}.255", 5004, FLOOD, marker + b"B",
                     broadcast=True)
            send_udp(lan, leaves[gid, i], addr(overlay(net, 3 - i)), 5004, FLOOD, marker + b"U")
        for i in (1, 2):  # sentinels, seen by the VLAN's other endpoint
            send_udp(lan, leaves[gid, i], f"198.51.{100 + net}.255", 5004, 1, marker + b"END",
                     broadcast=True)
    for (gid, _i), cap in caps.items():
        cap.wait_for(incoming_with(b"VXVLAN%dEND" % gid), what="the sentinel")
    frames = {key: cap.stop() for key, cap in caps.items()}
    floods_done = time.time_ns()

    for (gid, i), seen in frames.items():
        incoming = [f for f in seen if f.incoming]
        other = 2001 - gid
        # Control: this tap got its own VLAN's floods from the other host.
        mine = b"VXVLAN%d" % gid
        assert carried(incoming, mine + b"B") >= FLOOD * 9 // 10, (gid, i)
        assert carried(incoming, mine + b"U") >= FLOOD * 9 // 10, (gid, i)
        # Nothing of the other VLAN: no marked datagram, no frame from its leaves at all.
        assert [f for f in incoming if b"VXVLAN%d" % other in f.data] == [], (gid, i)
        strangers = {bytes.fromhex(macs[other, j].replace(":", "")) for j in (1, 2)}
        assert [f for f in incoming if f.src in strangers] == [], (gid, i)
        # And the endpoint never learned a MAC of the other VLAN: asked of a status
        # computed after the sentinel arrived (the file is written once a second,
        # the first time a second after the start), which knows the VLAN's peer.
        learned = peer_macs(next_status(st[gid, i], since_ns=floods_done))
        assert macs[gid, 3 - i] in learned, (gid, i, learned)
        assert learned & {macs[other, 1], macs[other, 2]} == set()
