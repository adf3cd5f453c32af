"""Fixtures for tests on a simulated LAN (root only, see tests/lan.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from lan import Lan, leftovers

PREFIX = "vxt"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: builds network namespaces, veth, bridges and taps")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the whole run, no namespace of ours may remain."""
    yield
    if os.geteuid() == 0:
        assert leftovers(PREFIX) == [], "test namespaces left behind"


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Lan(hosts=3) as built:
        yield built


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Where endpoints log; shown by pytest when a test fails."""
    return tmp_path
