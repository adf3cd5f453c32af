"""The host part of the stable MACs (provision.host_id): clones of one image
differ, one host keeps its MACs across daemon restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from vxvdex.daemon import provision

NIC1, NIC2 = bytes.fromhex("5254000000a1"), bytes.fromhex("5254000000a2")


@pytest.fixture
def machine_id(tmp_path: Path) -> Path:
    path = tmp_path / "machine-id"
    path.write_text("0123456789abcdef0123456789abcdef\n")  # the image's, on every clone
    return path


def boot(run_dir: Path, machine_id: Path, name: str, nic: bytes | None,
         monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A daemon start on a fresh boot (empty run directory): alice's MAC."""
    (run_dir / provision.HOST_ID_FILE).unlink(missing_ok=True)
    monkeypatch.setattr(provision, "permanent_mac", lambda ifname: nic if ifname == "eth0" else None)
    hid = provision.host_id(run_dir, name, "eth0", machine_id=machine_id)
    return provision.stable_mac(hid, "alice", 5000, "vde0")


def test_clones_with_one_machine_id_and_run_dir_get_different_macs(
        tmp_path: Path, machine_id: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"  # the same path on every clone
    node1 = boot(run_dir, machine_id, "node1", None, monkeypatch)
    node2 = boot(run_dir, machine_id, "node2", None, monkeypatch)
    assert node1 != node2, "host names differ"
    # Same name too (an image that also fixed the host name): the NICs differ.
    assert boot(run_dir, machine_id, "node", NIC1, monkeypatch) != boot(run_dir, machine_id, "node", NIC2,
                                                                           monkeypatch)


def test_a_host_keeps_its_macs(tmp_path: Path, machine_id: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    first = boot(run_dir, machine_id, "node1", NIC1, monkeypatch)
    # A daemon restart in the same boot, the uplink gone meanwhile: kept.
    monkeypatch.setattr(provision, "permanent_mac", lambda ifname: None)
    hid = provision.host_id(run_dir, "node1", None, machine_id=machine_id)
    assert provision.stable_mac(hid, "alice", 5000, "vde0") == first
    # A reboot (run directory empty again), same host: the same MAC.
    assert boot(run_dir, machine_id, "node1", NIC1, monkeypatch) == first


def test_virtual_links_have_no_permanent_mac() -> None:
    assert provision.permanent_mac("lo") is None
    assert provision.permanent_mac("no-such-link0") is None
