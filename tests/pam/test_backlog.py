"""pam_vxvdex when vxvdexd's listen backlog is full (issue 12, item 12): the
login waits for the daemon within the module's timeout; it is not refused."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pamtest import Accounts, stack

BUSY = 1.5   # seconds the daemon does not accept


def test_full_backlog_waits_instead_of_refusing(module: Path, pam_service: Callable[[str], str],
                                                workdir: Path, accounts: Accounts) -> None:
    path = workdir / "control"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(str(path))
    server.listen(1)
    fillers = []
    while True:  # connect without accepting until the backlog is full
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.setblocking(False)
        try:
            s.connect(str(path))
        except BlockingIOError:
            s.close()
            break
        fillers.append(s)
    user = accounts.user("a", accounts.group("a"))
    service = pam_service(stack(module, f"socket={path} timeout=10"))
    login = subprocess.Popen(["pamtester", "-v", service, user, "open_session", "close_session"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def serve() -> None:
        for s in fillers:  # their connections come first: answered by nothing
            s.close()
        server.settimeout(10)
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                if conn.recv(4096):
                    conn.send(b"unmanaged not in a managed group")

    time.sleep(BUSY)
    assert login.poll() is None, "the login waits while the daemon is busy"
    thread = threading.Thread(target=serve, daemon=True)
    t0 = time.monotonic()
    thread.start()
    try:
        out, err = login.communicate(timeout=30)
    finally:
        server.close()
    assert login.returncode == 0, (out, err)
    assert "successfully opened a session" in out
    assert time.monotonic() - t0 < 10
