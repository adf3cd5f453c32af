"""Fixtures of the AF_VXVDEX guest tests.

These tests run only inside the qemu guest that tests/kernel/run boots (it
sets VXVDEX_KERNEL_GUEST=1 and loads af_vxvdex). Elsewhere they are not
collected; in the guest, a missing AF_VXVDEX is an error, never a skip.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

if os.environ.get("VXVDEX_KERNEL_GUEST") != "1":
    collect_ignore_glob = ["*"]
else:
    import vxkguest as vx

    try:
        vx.vx_socket(socket.AF_INET).close()
    except OSError as e:
        raise pytest.UsageError(f"AF_VXVDEX is not available in the test guest: {e}") from e

    @pytest.fixture(scope="session")
    def lan() -> Iterator[vx.Lan]:
        lan = vx.setup_lan()
        yield lan
        vx.teardown_lan()

    @pytest.fixture(params=vx.FAMILIES, ids=vx.FAMILY_IDS)
    def family(request: pytest.FixtureRequest) -> int:
        return int(request.param)

    @pytest.fixture
    def ep(lan: vx.Lan, family: int) -> Iterator[vx.Endpoint]:
        e = vx.endpoint(family)
        yield e
        e.close()
