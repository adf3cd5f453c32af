"""Fixtures for tests on a simulated LAN (root only, see tests/lan.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster
from lan import ETC_NETNS, Lan, leftovers
from runtrace import RunTrace, running_cluster


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: builds network namespaces, veth, bridges and taps")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the whole run, no namespace of ours may remain. Ours: those named
    after a Lan built by this run (other runs on the machine may be going on)."""
    prefixes: list[str] = []
    build = Lan._build

    def recording_build(self: Lan) -> None:
        prefixes.append(self.prefix)
        build(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Lan, "_build", recording_build)
        yield
    if os.geteuid() == 0:
        left = [name for prefix in prefixes for name in leftovers(prefix + "-")]
        assert left == [], "test namespaces left behind"
        etc = [p.name for prefix in prefixes for p in ETC_NETNS.glob(f"{prefix}-*")]
        assert etc == [], "/etc/netns entries of test namespaces left behind"


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Lan(hosts=3) as built:
        yield built


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Where endpoints log; shown by pytest when a test fails."""
    return tmp_path


@pytest.fixture
def nothing_of_the_run_left() -> Iterator[list[RunTrace]]:
    """Clusters register here as they close; after the test (and their
    teardown) none of their users, groups, namespaces or processes may remain."""
    traces: list[RunTrace] = []
    yield traces
    left = [thing for trace in traces for thing in trace.left()]
    assert left == [], "left behind by the test"


@pytest.fixture
def cluster(nothing_of_the_run_left: list[RunTrace]) -> Iterator[Cluster]:
    """Three simulated hosts, each ready for a vxvdexd (tests start them, after
    adding users and configuration); everything is removed afterwards."""
    with running_cluster(hosts=3, traces=nothing_of_the_run_left) as built:
        yield built
