#!/usr/bin/env python3
"""Call vxvdex.services.nat in the namespace this runs in (a simulated host),
as the gateway code of vxvdexd does.

  natctl.py attach GW_NS GID SUBNET UPLINK
  natctl.py detach GID
  natctl.py remove-all
  natctl.py attached          (prints the gids, space-separated)
"""

import ipaddress
import sys

from vxvdex.services import nat, vlans


def main(args: list[str]) -> None:
    if args[0] == "attach":
        gw_ns, gid, subnet, uplink = args[1], int(args[2]), ipaddress.IPv4Network(args[3]), args[4]
        vlan = vlans.Vlan(gid=gid, group=f"g{gid}", subnet=subnet, prefix6=vlans.ula_prefix(gid),
                          server="h1", egress="nat", domain=f"g{gid}.vx")
        nat.attach(gw_ns, vlan, uplink)
    elif args[0] == "detach":
        nat.detach(int(args[1]))
    elif args[0] == "attached":
        print(" ".join(map(str, nat.attached())))
    elif args[0] == "remove-all":
        nat.remove_all()
    else:
        raise SystemExit(f"unknown command {args[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
