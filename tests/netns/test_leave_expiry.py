"""Forgetting peers (PROTOCOL.md section 4): the leave datagram an endpoint
sends when stopped, and the expiry of entries that are not refreshed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from capture import Capture, Frame
from endpoints import addr, overlay, pings, plug
from lan import Lan
from observe import mac_bytes, mac_of, next_status, peer_macs, peers_at, send_frames, wait_status
from observe import static_neighbors as silence

HEADER_1000 = bytes.fromhex("08000000" "0003e800")   # flags, reserved, VNI 1000, reserved
OTHER_MAC = "00:00:5e:00:53:01"                     # a documentation MAC (RFC 7042)


@pytest.mark.parametrize("underlay", ["v4", "v6"])
def test_sigterm_sends_leave_exits_0_and_peers_forget(lan: Lan, logs: Path, underlay: str) -> None:
    v6 = underlay == "v6"
    url = "vxvde:///grp=1000" + ("/v6" if v6 else "")
    group = "ff05:56de::3e8" if v6 else "239.0.3.232"
    host = lan.addr6 if v6 else lan.addr4
    st = {i: logs / f"status{i}.json" for i in (1, 2, 3)}
    started = {i: lan.leaf(i, f"u{i}", plug(url, f"t{i}", "--status", str(st[i])), [overlay(0, i)],
                           log=logs / f"plug{i}.log") for i in (1, 2, 3)}
    leaves = {i: ns for i, (ns, _proc) in started.items()}
    macs = {i: mac_of(lan, leaves[i], f"t{i}") for i in (1, 2, 3)}
    for i in (1, 3):
        assert pings(lan, leaves[i], addr(overlay(0, 2)))
    assert pings(lan, leaves[1], addr(overlay(0, 3)))
    # A second MAC behind h2's endpoint: a frame with another source MAC.
    spoofed = b"\xff" * 6 + mac_bytes(OTHER_MAC) + b"\x88\xb5" + b"VXSPOOF".ljust(46)
    send_frames(lan, leaves[2], "t2", [spoofed])
    port2 = wait_status(st[2], bool)["unicast_port"]
    before = {}
    for i in (1, 3):
        before[i] = wait_status(st[i], lambda s: {macs[2], OTHER_MAC} <= peer_macs(s),
                                what=f"h{i} to learn both MACs behind h2")
        assert {p["mac"] for p in peers_at(before[i], host(2), port2)} == {macs[2], OTHER_MAC}

    lan_cap = Capture(lan, lan.host(3), "eth0", logs / "lan.cap")
    assert lan.stop(started[2][1], signal.SIGTERM) == 0
    lan_cap.wait_for(lambda f: f.udp() == (host(2), port2, group, 14789, HEADER_1000), what="the leave")
    # Exactly one header-only datagram from h2's endpoint (its leaf may have sent frames before).
    from_h2 = [u for f in lan_cap.stop() if (u := f.udp()) is not None and u[:2] == (host(2), port2)]
    assert [u for u in from_h2 if len(u[4]) <= 8] == [(host(2), port2, group, 14789, HEADER_1000)]
    assert "left vxvde://" in (logs / "plug2.log").read_text()

    for i, other in ((1, 3), (3, 1)):
        after = wait_status(st[i], lambda s: not peers_at(s, host(2), port2), what=f"h{i} to forget h2")
        assert after["counters"]["leaves"] >= before[i]["counters"]["leaves"] + 1
        assert peer_macs(after) & {macs[2], OTHER_MAC} == set()
        assert macs[other] in peer_macs(after), f"the leave of h2 made h{i} forget another peer"


def test_entries_expire_then_frames_go_to_the_group(lan: Lan, logs: Path) -> None:
    url = "vxvde:///grp=1000/expiretime=2"
    st = {i: logs / f"status{i}.json" for i in (1, 2, 3)}
    leaves = {i: lan.leaf(i, f"u{i}", plug(url, f"t{i}", "--status", str(st[i])), [overlay(0, i)],
                          log=logs / f"plug{i}.log")[0] for i in (1, 2, 3)}
    macs = {i: mac_of(lan, leaves[i], f"t{i}") for i in (1, 2, 3)}
    # Silent leaves: nothing but our pings may refresh an entry.
    for i in (1, 2, 3):
        silence(lan, leaves[i], f"t{i}", {addr(overlay(0, j)): macs[j] for j in (1, 2, 3) if j != i})
    silenced = time.time_ns()
    # What h1 learned from the leaves' first IPv6 chatter expires first: asked of
    # a status computed after the silence (the first one, written at the start,
    # has learned nothing yet).
    wait_status(st[1], lambda s: macs[2] not in peer_macs(s), timeout=6, what="h1 to forget h2's chatter",
                since_ns=silenced)
    cap = Capture(lan, leaves[3], "t3", logs / "t3.cap")

    def echo_request_1_to_2(f: Frame) -> bool:
        p = f.ip()
        return (f.incoming and p is not None and p[:3] == (addr(overlay(0, 1)), addr(overlay(0, 2)), 1)
                and p[3][:1] == b"\x08")

    def echo_requests_seen_on_h3() -> int:
        return sum(map(echo_request_1_to_2, cap.frames()))

    # Nothing learned: the first request goes to the group (h3 sees it), the reply
    # teaches h1 where h2 is, and the next requests go to h2 alone.
    res = lan.run(leaves[1], "ping", "-c3", "-i", "0.2", "-W", "2", addr(overlay(0, 2)), check=False)
    last_traffic = time.monotonic()
    assert res.returncode == 0, res.stdout
    seen = wait_status(st[1], lambda s: macs[2] in peer_macs(s), timeout=2.5, what="h1 to learn h2")
    assert [p["address"] for p in seen["peers"] if p["mac"] == macs[2]] == [lan.addr4(2)]

    # Two seconds without a frame from h2: the entry is gone (status is written once a second).
    gone = wait_status(st[1], lambda s: macs[2] not in peer_macs(s), timeout=6, what="the entry to expire")
    waited = time.monotonic() - last_traffic
    assert 1.5 <= waited <= 5, f"entry disappeared after {waited:.1f}s, expiretime is 2"
    assert echo_requests_seen_on_h3() == 1

    # The next frame to h2's MAC goes to the group again: h3 sees it, h1 counts it.
    res = lan.run(leaves[1], "ping", "-c1", "-W", "2", addr(overlay(0, 2)), check=False)
    assert res.returncode == 0, res.stdout
    cap.wait_for(echo_request_1_to_2, count=2, what="the second echo request on h3")
    assert echo_requests_seen_on_h3() == 2
    after = next_status(st[1])
    assert after["counters"]["tx_datagrams_group"] == gone["counters"]["tx_datagrams_group"] + 1
    cap.stop()
