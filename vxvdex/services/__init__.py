"""VLAN services: the gateway (dnsmasq), the DHCP clients in user namespaces, and NAT (nftables)."""
