"""Supervision helpers without a daemon: restart backoff, heartbeats, our
namespace names, status files read as untrusted input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vxvdex import config
from vxvdex.daemon import manager, supervisor


def test_backoff_first_restarts_at_once_then_doubling_to_the_cap() -> None:
    b = supervisor.Backoff(free=3, first=0.2, cap=1.0)
    assert [b.delay("k") for _ in range(7)] == [0, 0, 0, 0.2, 0.4, 0.8, 1.0]
    assert b.delay("other") == 0


def test_heartbeat_age(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    assert supervisor.heartbeat_age(beat) is None
    beat.touch()
    os.utime(beat, (0, 0))
    assert supervisor.heartbeat_age(beat) is None, "dated 1970: not started yet"
    os.utime(beat)
    age = supervisor.heartbeat_age(beat)
    assert age is not None and age < 5
    link = tmp_path / "link"
    link.symlink_to(beat)
    assert supervisor.heartbeat_age(link) is None, "not a regular file: no heartbeat"


@pytest.mark.parametrize(("template", "scope", "name", "user"), [
    ("vxvdex-{user}", "user", "vxvdex-alice", "alice"),
    ("vxvdex-{user}", "user", "vxvdex-al-ice", "al-ice"),
    ("vxvdex-{user}", "user", "other-alice", None),
    ("{user}-{session}", "session", "alice-s1", None),   # ambiguous split: left to a login
])
def test_our_namespace_names(tmp_path: Path, template: str, scope: str, name: str, user: str | None) -> None:
    cfg = config.parse(f"netns_name: '{template}'\nscope: {scope}\n", tmp_path / "c.yaml")
    pattern = manager._name_pattern(cfg)
    match = pattern.fullmatch(name)
    groups = match.groupdict() if match else {}
    found = groups.get("user") if "session" not in groups else None
    assert found == user


def test_status_files_are_read_as_untrusted(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"pid": 1}')
    assert manager._read_status(good) == {"pid": 1}
    secret = tmp_path / "secret"
    secret.write_text('{"secret": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(secret)
    assert manager._read_status(link) == {}
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert manager._read_status(fifo) == {}, "returns at once"
    big = tmp_path / "big.json"
    big.write_text('{"x": "' + "a" * manager.MAX_STATUS_BYTES + '"}')
    assert manager._read_status(big) == {}
    for text in ("[]", "null", "{"):
        good.write_text(text)
        assert manager._read_status(good) == {}
