"""The text of vxvdex's nftables table for egress nat (`table inet vxvdex_egress`).

Every rule names the gateway veths by their common prefix (vxgw*), so the
table depends on the uplink only and is the same whichever VLANs are
attached: it is replaced as a whole, atomically, by one `nft -f` run, and
deleted as a whole. No other table is read or changed.

What it promises, for traffic of the veths only:
- prerouting: a packet from a veth whose source is not routed back through
  that veth is dropped (reverse path check): a VLAN cannot send as another
  VLAN, whose clients would get the replies, nor as any other address.
- input: nothing from a VLAN reaches the host itself (no port, no address:
  the uplink's, the veth's, any other).
- output: nothing from the host enters a VLAN (its local users are not
  members of the VLAN).
- forward: a VLAN leaves by the uplink only (never into another VLAN's veth
  or any other interface; no IPv6; not to link-local addresses such as a
  cloud metadata service); into a VLAN only replies from the uplink
  (conntrack), nothing an outside host starts.
- postrouting: what leaves a veth by the uplink is masqueraded to the
  uplink's address.
If vxvdex turned forwarding on for the uplink (it was off), the chain
`uplink_guard` keeps everything else arriving there unforwarded, as before.
"""

from __future__ import annotations

TABLE = "vxvdex_egress"
FAMILY = "inet"
VETH_PREFIX = "vxgw"
GUARD_CHAIN = "uplink_guard"


def ruleset(uplink: str, guard_uplink: bool) -> str:
    """The whole table, preceded by its deletion (an atomic replace)."""
    veths = f'"{VETH_PREFIX}*"'
    up = f'"{uplink}"'
    guard = (f"    chain {GUARD_CHAIN} {{\n"
             f"        oifname != {veths} drop\n"
             f"    }}\n") if guard_uplink else ""
    jump_guard = f"        iifname {up} jump {GUARD_CHAIN}\n" if guard_uplink else ""
    return (
        f"table {FAMILY} {TABLE}\n"
        f"delete table {FAMILY} {TABLE}\n"
        f"table {FAMILY} {TABLE} {{\n"
        f"    chain prerouting {{\n"
        f"        type filter hook prerouting priority filter; policy accept;\n"
        f"        iifname {veths} fib saddr . iif oif missing drop\n"
        f"    }}\n"
        f"    chain input {{\n"
        f"        type filter hook input priority filter; policy accept;\n"
        f"        iifname {veths} drop\n"
        f"    }}\n"
        f"    chain output {{\n"
        f"        type filter hook output priority filter; policy accept;\n"
        f"        oifname {veths} drop\n"
        f"    }}\n"
        f"{guard}"
        f"    chain from_vlan {{\n"
        f"        meta nfproto != ipv4 drop\n"
        f"        oifname != {up} drop\n"
        f"        ip daddr {{ 169.254.0.0/16, 224.0.0.0/4, 255.255.255.255 }} drop\n"
        f"    }}\n"
        f"    chain to_vlan {{\n"
        f"        meta nfproto != ipv4 drop\n"
        f"        iifname != {up} drop\n"
        f"        ct state != {{ established, related }} drop\n"
        f"    }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter; policy accept;\n"
        f"        iifname {veths} jump from_vlan\n"
        f"        oifname {veths} jump to_vlan\n"
        f"{jump_guard}"
        f"    }}\n"
        f"    chain postrouting {{\n"
        f"        type nat hook postrouting priority srcnat; policy accept;\n"
        f"        iifname {veths} oifname {up} masquerade\n"
        f"    }}\n"
        f"}}\n")


def deletion() -> str:
    """Delete the table if it is there (the `table` line makes it exist first)."""
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
