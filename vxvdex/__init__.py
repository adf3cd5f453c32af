"""vxvdex: private network namespaces on per-group virtual Ethernet LANs."""

__version__ = "0.1.0"
