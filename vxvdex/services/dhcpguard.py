"""The gateway's guard against DHCP starvation from one tap.

A user cannot forge the Ethernet source of her frames (she has no
CAP_NET_RAW in her namespace: the kernel writes the tap's MAC), but she can
send DHCP requests over UDP in the names of made-up clients (any chaddr and
client id) and so take every address of the pool. In the gateway namespace,
nftables (netdev ingress of vde0) therefore drops a DHCP request whose
client hardware address (chaddr) is no Ethernet source seen on the VLAN,
and dnsmasq (--dhcp-ignore-clid) knows clients by chaddr alone: one tap, at
most one lease (plus those of clients it could impersonate: real taps).

The chaddr is at offset 28 of the BOOTP message, after the 8 bytes of the
UDP header: @th,288,48. Raw payloads on both sides (@ll,48,48 is the
Ethernet source) keep nft's types equal.
"""

from __future__ import annotations

import subprocess

from vxvdex.daemon import netns

TABLE = "vxvdex_dhcp"


def ruleset(ifname: str) -> str:
    return f"""table netdev {TABLE}
delete table netdev {TABLE}
table netdev {TABLE} {{
    set seen {{
        typeof @ll,48,48
        size 65536
        flags dynamic,timeout
        timeout 1d
    }}
    chain ingress {{
        type filter hook ingress device "{ifname}" priority filter; policy accept;
        update @seen {{ @ll,48,48 }}
        udp dport 67 @th,288,48 != @seen counter drop
    }}
}}
"""


def apply(ns_name: str, ifname: str) -> None:
    """Install (or replace) the guard in namespace ns_name; OSError if nft fails."""
    try:
        res = subprocess.run(["nsenter", f"--net={netns.path_of(ns_name)}", "--", "nft", "-f", "-"],
                             input=ruleset(ifname), capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise OSError("nsenter is missing: install util-linux") from None
    if res.returncode != 0:
        raise OSError(f"cannot install the DHCP guard in {ns_name} (is nftables installed?): "
                      f"{res.stderr.strip()}")
