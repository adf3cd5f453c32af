"""Bad input from the LAN: a sender on h3 throws every kind of malformed or
foreign datagram (and thousands of seeded random ones) at both sockets of
an endpoint. Nothing reaches its tap, each kind is counted under its drop
reason, and forwarding goes on as before."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from capture import Capture, incoming_with
from endpoints import addr, overlay, pings, plug
from lan import REPO, Lan
from observe import ip_counters, mac_bytes, mac_of, next_status, peer_macs, send_udp, wait_status
from observe import static_neighbors as silence

BADINPUT = str(REPO / "tests" / "netns" / "badinput.py")
SEED = 20260
RANDOM = 3000
REASONS = ("short", "bad_flags", "bad_vni", "runt", "oversize")


def test_malformed_and_foreign_datagrams_are_dropped_and_counted(lan: Lan, logs: Path) -> None:
    url = "vxvde:///grp=1000"
    st = logs / "status1.json"
    u1, plug1 = lan.leaf(1, "u1", plug(url, "t1", "--status", str(st)), [overlay(0, 1)],
                         log=logs / "plug1.log")
    u2, plug2 = lan.leaf(2, "u2", plug(url, "t2"), [overlay(0, 2)], log=logs / "plug2.log")
    mac1, mac2 = mac_of(lan, u1, "t1"), mac_of(lan, u2, "t2")
    # Silent leaves (no IPv6, no ARP): h1's tap gets exactly what we send it.
    silence(lan, u1, "t1", {addr(overlay(0, 2)): mac2})
    silence(lan, u2, "t2", {addr(overlay(0, 1)): mac1})
    assert pings(lan, u1, addr(overlay(0, 2)))
    before = next_status(st)
    assert mac2 in peer_macs(before)
    udp_before = ip_counters(lan, lan.host(1))
    cap = Capture(lan, u1, "t1", logs / "t1.cap")

    res = lan.run(lan.host(3), sys.executable, BADINPUT, "1000", str(SEED), str(RANDOM),
                  "239.0.3.232:14789", f"{lan.addr4(1)}:{before['unicast_port']}", timeout=120)
    sent = json.loads(res.stdout)["sent"]
    assert sent["oversize"] == 4 and sent["short"] >= 16 and sent["leaves"] >= 6, sent

    def all_counted(s: dict) -> bool:
        c, c0 = s["counters"], before["counters"]
        return (all(c["drops"][r] - c0["drops"][r] >= sent.get(r, 0) for r in REASONS)
                and c["leaves"] - c0["leaves"] >= sent["leaves"])
    try:
        after = wait_status(st, all_counted, timeout=10, what="every bad datagram in the counters")
    except TimeoutError:
        udp = ip_counters(lan, lan.host(1))
        lost = {k: udp[k] - udp_before[k] for k in ("UdpRcvbufErrors", "UdpInErrors", "IpReasmFails")}
        raise AssertionError(f"sent {sent}, counted {json.loads(st.read_text())['counters']}, "
                             f"kernel losses on h1: {lost}") from None
    c, c0 = after["counters"], before["counters"]
    assert c["rx_frames"] == c0["rx_frames"], "a datagram was taken as a frame"
    assert c["drops"]["truncated"] == c0["drops"]["truncated"]
    # h2's leaf was silent all along: the strangers' "leaves" did not make h1 forget it.
    assert mac2 in peer_macs(after)

    # Sentinel from h2, then: nothing but h2's frames entered the tap.
    send_udp(lan, u2, "198.51.100.255", 5007, 1, b"VXEND", broadcast=True)
    cap.wait_for(incoming_with(b"VXEND"), what="h2's sentinel")
    incoming = [f for f in cap.stop() if f.incoming]
    assert [f for f in incoming if b"VXBAD" in f.data] == []
    assert len(incoming) == 1 and incoming[0].src == mac_bytes(mac2), incoming

    # Still forwarding, both ways, and nobody died.
    assert pings(lan, u1, addr(overlay(0, 2)))
    assert pings(lan, u2, addr(overlay(0, 1)))
    assert plug1.poll() is None and plug2.poll() is None
