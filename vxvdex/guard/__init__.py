"""The port guard: keeps every process but vxvdex's own off the vxvde port (nftables, cgroup BPF)."""
