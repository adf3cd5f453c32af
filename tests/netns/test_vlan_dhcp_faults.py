"""Faults of the DHCP clients: a client killed is restarted and keeps its
address; a daemon killed and restarted adopts the clients it finds instead
of starting second ones; a status file path taken by something else never
stops the lease nor shows what that something says. Also: the client's
privileges, and the service on an extra network.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import ENDPOINT_USER, Cluster
from dhcpgw import SUBNET, Gateway, served_alice, vlans_config
from lan import sh, wait_for
from provisioned import port
from test_vlan_dhcp import DOMAIN, addr4, bound, dhcp

CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW = 10, 12, 13


@pytest.fixture
def leased(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[Cluster, str, str, dict]]:
    """alice logged in on h1 with her lease from a gateway on h2."""
    alice, gw = served_alice(cluster, tmp_path, DOMAIN)
    ns = cluster.open(1, alice)
    gw.start(port(cluster, 1, alice)["url"])
    yield cluster, alice, ns, bound(cluster, alice)
    gw.stop_serving()


def clients_in(ns: str) -> list[int]:
    """The udhcpc processes in ns (the hook's short-lived processes come and go meanwhile)."""
    found = []
    for pid in sh("ip", "netns", "pids", ns).stdout.split():
        try:
            if b"udhcpc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except FileNotFoundError:
            continue
    return found


def valid_lft(ns: str) -> int:
    out = sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "vde0").stdout
    return int(out.split("valid_lft ")[1].split("sec")[0])


def renew_and_wait(ns: str, pid: int) -> None:
    """Make the client renew (SIGUSR1) and wait until its hook has run: the
    hook resets the address's lifetime to the lease, then exits."""
    wait_for(lambda: valid_lft(ns) < 3599, what="the lifetime to count down")
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: valid_lft(ns) >= 3599, timeout=15, what="the renewal's hook")
    wait_for(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().strip() == "",
             what="the hook to finish")


def test_client_runs_with_least_privilege(leased: tuple[Cluster, str, str, dict]) -> None:
    _c, _alice, ns, lease = leased
    (pid,) = clients_in(ns)
    assert pid == lease["client_pid"]
    fields = dict(ln.split(":\t", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines())
    ep_uid = int(sh("id", "-u", ENDPOINT_USER).stdout)
    assert {int(u) for u in fields["Uid"].split()} == {ep_uid}
    allowed = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_NET_BIND_SERVICE)
    for kind in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(fields[kind], 16) & ~allowed == 0, (kind, fields[kind])
    assert fields["NoNewPrivs"].strip() == "1" and fields["Groups"].strip() == ""


def test_killed_client_is_restarted_with_the_same_address(leased: tuple[Cluster, str, str, dict]) -> None:
    c, alice, ns, lease = leased
    os.kill(lease["client_pid"], signal.SIGKILL)
    again = wait_for(lambda: (d := dhcp(c, alice))["client_restarts"] == 1 and d["client_alive"] and d,
                     what="the DHCP client restarted")
    assert again["client_pid"] != lease["client_pid"]
    assert clients_in(ns) == [again["client_pid"]]
    assert bound(c, alice)["address"] == lease["address"] and addr4(ns) == [lease["address"]]


def test_daemon_restart_adopts_the_client(leased: tuple[Cluster, str, str, dict]) -> None:
    c, alice, ns, lease = leased
    c.lan.stop(c.daemons[1], signal.SIGKILL)
    c.start(1)
    after = dhcp(c, alice)
    assert after["client_pid"] == lease["client_pid"] and after["client_alive"]
    assert clients_in(ns) == [lease["client_pid"]], "adopted, not duplicated"
    assert after["state"] == "bound" and after["address"] == lease["address"]
    # and it is supervised again: killed, it comes back
    os.kill(lease["client_pid"], signal.SIGKILL)
    wait_for(lambda: (d := dhcp(c, alice))["client_alive"] and d["client_pid"] != lease["client_pid"],
             what="the adopted client restarted")
    assert len(clients_in(ns)) == 1


def test_status_path_taken_by_a_link_or_a_directory(leased: tuple[Cluster, str, str, dict],
                                                    tmp_path: Path) -> None:
    c, alice, ns, lease = leased
    path = c.run_dir(1) / "endpoints" / f"{ns}-vde0.dhcp.json"
    fake = tmp_path / "fake.json"
    fake.write_text('{"state": "bound", "time": 4000000000, "lease": 60, "address": "192.0.2.99", '
                    '"prefixlen": "24"}')
    path.unlink()
    path.symlink_to(fake)
    assert dhcp(c, alice)["state"] == "waiting for DHCP from the gateway", "the link is not followed"
    path.unlink()
    path.mkdir()
    (path / "x").write_text("")
    ep = pwd.getpwnam(ENDPOINT_USER)
    os.chown(path, ep.pw_uid, ep.pw_gid)  # as the client's own uid could make it
    renew_and_wait(ns, lease["client_pid"])  # the hook cannot write its status now
    assert os.listdir(path) == ["x"], "the hook wrote nothing into the directory"
    assert dhcp(c, alice)["state"] == "waiting for DHCP from the gateway"
    assert dhcp(c, alice)["client_alive"] and addr4(ns) == [lease["address"]], "the lease goes on"
    (path / "x").unlink()
    path.rmdir()


def test_extra_network_gets_the_service(cluster: Cluster, tmp_path: Path) -> None:
    ga, gx = f"vxa{cluster.tag}", f"vxx{cluster.tag}"
    gid_a, gid_x = cluster.group(ga), cluster.group(gx)
    alice = cluster.user("alice", ga, extra=(gx,))
    subnet_x = ipaddress.IPv4Network("192.0.2.192/26")
    cluster.extra_config = (f"extra_networks: [{gx}]\n" + vlans_config(ga, domain=DOMAIN)
                            + f"  {gx}: {{subnet: {subnet_x}, server: h3, domain: x.vx}}\n")
    cluster.start(1)
    ns = cluster.open(1, alice)
    (tmp_path / "a").mkdir()
    (tmp_path / "x").mkdir()
    gws = [Gateway(cluster, 2, gid_a, DOMAIN, tmp_path / "a").start(port(cluster, 1, alice)["url"]),
           Gateway(cluster, 3, gid_x, "x.vx", tmp_path / "x", subnet=subnet_x)
           .start(port(cluster, 1, alice, "vde1")["url"])]
    try:
        assert ipaddress.IPv4Interface(bound(cluster, alice)["address"]) in SUBNET
        assert ipaddress.IPv4Interface(bound(cluster, alice, ifname="vde1")["address"]) in subnet_x
        assert dhcp(cluster, alice, "vde1")["domain"] == "x.vx"
        assert Path(f"/etc/netns/{ns}/resolv.conf").read_text().splitlines()[1:] == [
            f"search {DOMAIN} x.vx", f"nameserver {gws[0].gw4}", f"nameserver {gws[1].gw4}"]
    finally:
        for gw in gws:
            gw.stop_serving()
