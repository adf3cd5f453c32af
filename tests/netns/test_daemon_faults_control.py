"""Issue 12: the control plane under load and against the endpoint user:
`list` with many peers, planted status files, a full listen backlog."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
import time

from cluster import Cluster
from lan import wait_for
from provisioned import ask_as, port
from test_daemon_faults import pair

from vxvdex import control

MACS = 1000         # into a 1024-bucket table: several hundred stay learned
LEARNED = 400
INJECT = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("vde0", 0))
for i in range(int(sys.argv[1])):
    src = bytes([2, 0x5e, 0, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    s.send(b"\\xff" * 6 + src + b"\\x88\\xb5" + bytes(50))
"""


def peers_total(ep: dict) -> int:
    return int(ep.get("peers_total", len(ep.get("peers", []))))


def test_list_and_status_stay_bounded_with_many_peers(cluster: Cluster) -> None:
    """Item 10: every peer learned used to go into every answer."""
    alice, _n1, n2 = pair(cluster)
    cluster.lan.run(n2, sys.executable, "-c", INJECT, str(MACS))
    wait_for(lambda: peers_total(port(cluster, 1, alice)["endpoint"]) >= LEARNED, timeout=10,
             what="the far side's MACs to be learned")
    listed = cluster.ask(1, "list")
    assert listed.status == "ok" and len(listed.text) < 8192, len(listed.text)
    (summary,) = listed.json()  # type: ignore[misc]
    assert summary["user"] == alice and peers_total(summary["ports"][0]["endpoint"]) >= LEARNED
    detail = cluster.ask(1, f"status {alice}")
    assert detail.status == "ok" and len(detail.text) < 65536, len(detail.text)
    res = cluster.session(1, "list")
    assert res.returncode == 0 and f"user {alice}" in res.stdout, res.stderr


def test_planted_status_files_are_not_followed(cluster: Cluster) -> None:
    """Item 11: the endpoint user owns the status directory: a symlink to a
    root-only file and a FIFO planted there."""
    alice, n1, _n2 = pair(cluster)
    status_file = cluster.run_dir(1) / "endpoints" / f"{n1}-vde0.json"
    secret = cluster.dir / "secret.json"
    secret.write_text('{"secret": "s3cr3t"}')
    secret.chmod(0o600)
    planted = status_file.with_name(".planted")
    planted.symlink_to(secret)
    planted.replace(status_file)
    assert "s3cr3t" not in cluster.ask(1, f"status {alice}").text
    assert "s3cr3t" not in ask_as(alice, cluster.run_dir(1), "status")["answer"]

    os.mkfifo(planted)
    planted.replace(status_file)
    answer = control.ask(cluster.run_dir(1), f"status {alice}", timeout=5)
    assert answer.status == "ok"


def fill_backlog(path: str) -> list[socket.socket]:
    """Connect without accepting until the listen backlog is full."""
    socks = []
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            return socks
        except OSError as err:
            s.close()
            assert err.errno == errno.EAGAIN, err
            return socks
        socks.append(s)


def test_full_backlog_is_waited_for(cluster: Cluster) -> None:
    """Item 12: a full listen backlog is not "vxvdexd is not running"."""
    group = f"vxa{cluster.tag}"
    cluster.group(group)
    daemon = cluster.start(1)
    os.kill(daemon.pid, signal.SIGSTOP)
    socks: list[socket.socket] = []
    try:
        socks = fill_backlog(str(control.socket_path(cluster.run_dir(1))))
        assert len(socks) >= 100
        got: list[object] = []
        asker = threading.Thread(target=lambda: got.append(_ask_version(cluster)))
        asker.start()
        time.sleep(1.0)  # the asker finds the backlog full for a while
        assert not got, got
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
        for s in socks:
            s.close()
    asker.join(15)
    assert got and got[0] == "ok", got


def _ask_version(c: Cluster) -> object:
    try:
        return control.ask(c.run_dir(1), "version", timeout=10).status
    except control.DaemonUnavailable as err:
        return f"unavailable: {err}"
