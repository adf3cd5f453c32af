"""The lease hook udhcpc runs at every DHCP event in a user's namespace.

It runs as the unprivileged client (CAP_NET_ADMIN only, inherited as an
ambient capability) and does two things:

- applies the lease: the address with the lease time as its lifetime (so the
  kernel itself drops it if no renewal comes), other IPv4 addresses of the
  interface removed, and a default route through the gateway;
- writes what `vxvdex-session status` shows to $VXVDEX_DHCP_STATUS, a small
  JSON file replaced atomically. Every value is first reduced to the
  characters an address, a number or a domain has (the server is a peer on
  the VLAN, not trusted), so nothing in it can break out of a JSON string.
  A failure to write (full disk, path taken) never stops the lease.

The script is installed by the daemon into its run directory (root's, mode
0755) from this text, so the venv and the Debian package run the same hook.
"""

from __future__ import annotations

import os
from pathlib import Path

SCRIPT = r"""#!/bin/sh
# vxvdex DHCP lease hook (installed by vxvdexd; see vxvdex/services/dhcp_hook.py)
clean() { printf '%s' "$1" | tr -cd 'A-Za-z0-9.:_ -' | cut -c1-255; }
status() {
	[ -n "$VXVDEX_DHCP_STATUS" ] || return 0
	tmp="${VXVDEX_DHCP_STATUS%/*}/.${VXVDEX_DHCP_STATUS##*/}.tmp"
	{
		printf '{"state": "%s", "event": "%s", "time": %s' "$1" "$(clean "$2")" "$(date +%s)"
		if [ "$1" = bound ]; then
			printf ', "address": "%s", "prefixlen": "%s", "lease": "%s"' \
				"$(clean "$ip")" "$(clean "$mask")" "$(clean "$lease")"
			printf ', "server": "%s", "router": "%s", "dns": "%s", "domain": "%s"' \
				"$(clean "$serverid")" "$(clean "$router")" "$(clean "$dns")" "$(clean "$domain")"
		fi
		printf '}\n'
	} > "$tmp" 2>/dev/null && mv -fT "$tmp" "$VXVDEX_DHCP_STATUS" 2>/dev/null || rm -f "$tmp" 2>/dev/null
	return 0
}
case "$1" in
bound|renew)
	lft="${lease:-forever}"
	ip -4 addr replace "$ip/$mask" dev "$interface" valid_lft "$lft" preferred_lft "$lft"
	for old in $(ip -4 -o addr show dev "$interface" | awk '{print $4}'); do
		[ "$old" = "$ip/$mask" ] || ip -4 addr del "$old" dev "$interface"
	done
	for gw in $router; do
		# vde0 first: an extra network's gateway is a fallback (higher metric)
		ip -4 route replace default via "$gw" dev "$interface" metric "$((100 + ${interface##*[!0-9]}))"
		break
	done
	status bound "$1"
	;;
deconfig|leasefail|nak)
	# The address stays until its lifetime ends (the kernel removes it then):
	# a client restarted during a lease keeps the session's connections.
	status waiting "$1"
	;;
esac
exit 0
"""


def install(run_dir: Path) -> Path:
    """Write the hook into run_dir (root's) as root:root 0755; return its path."""
    path = run_dir / "dhcp-hook"
    tmp = run_dir / ".dhcp-hook.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o755)
    try:
        os.write(fd, SCRIPT.encode())
        os.fchmod(fd, 0o755)
    finally:
        os.close(fd)
    tmp.replace(path)
    return path
