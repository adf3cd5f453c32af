"""A real pam_vxvdex login while an unprivileged user holds 5,000 connections
to the control socket (issue 11 item 1; the netns tier measures the times).

The daemon starts with the soft descriptor limit systemd gives a unit that
sets none (1024), as an unfixed daemon died at about 1,000 connections.
"""

from __future__ import annotations

import json
import pwd
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from lan import REPO
from pamtest import Accounts, Daemon, stack
from test_module import HOST_NETNS, PAM_SUCCESS, probe

FLOOD = REPO / "tests" / "netns" / "flood.py"
CONNECTIONS = 5000


def test_login_while_a_user_floods_the_socket(module: Path, pam_service: Callable[[str], str],
                                              daemons: Callable[..., Daemon], accounts: Accounts) -> None:
    ga, gc = accounts.group("a"), accounts.group("c")
    alice, carol = accounts.user("a", ga), accounts.user("c", gc)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        h1 = daemons(1, [ga])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    service = pam_service(stack(module, f"socket={h1.socket}"))
    pw = pwd.getpwnam(carol)
    flood = subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                              sys.executable, str(FLOOD), str(h1.socket), str(CONNECTIONS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert flood.stdout is not None
        held = json.loads(flood.stdout.readline() or "{}")
        assert h1.proc is not None and h1.proc.poll() is None, h1.log.read_text()[-2000:]
        assert held.get("connected") == CONNECTIONS, held
        for _ in range(2):  # the first login provisions, the second joins
            out = probe(service, alice)
            assert out["open"] == PAM_SUCCESS, (out, h1.log.read_text()[-2000:])
            assert out["netns"] == h1.netns_inode(alice) != HOST_NETNS
    finally:
        assert flood.stdin is not None
        flood.stdin.close()
        flood.wait(30)
    assert h1.proc.poll() is None and h1.answers()
