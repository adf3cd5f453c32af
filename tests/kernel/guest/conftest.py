"""Fixtures for the AF_VXVDEX guest tests (run only inside the qemu guest)."""
import os
import socket

import pytest

AF_VXVDEX = 13

if os.environ.get("VXVDEX_KERNEL_GUEST") != "1":
    # On a host (no module can be loaded there) these tests are not collected;
    # tests/kernel/run boots a guest and sets VXVDEX_KERNEL_GUEST=1.
    collect_ignore_glob = ["*"]
else:
    try:
        os.setegid(1000)
        try:
            socket.socket(AF_VXVDEX, socket.SOCK_DGRAM, socket.AF_INET).close()
        finally:
            os.setegid(0)
    except OSError as e:
        raise pytest.UsageError(f"AF_VXVDEX is not available in the guest: {e}") from e
