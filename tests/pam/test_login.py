"""A console login: `login -f USER` on a pseudo-terminal (shadow's login on
Debian 12, util-linux's on Debian 13, which stops with "change directory
failed" when the home does not exist: the user gets one).

login(1) always uses the PAM service "login". The machine's /etc/pam.d/login
is never touched: login runs in a private mount namespace (a slave of the
host's) in which the test's stack is bind-mounted over /etc/pam.d/login.
"""

from __future__ import annotations

import json
import os
import pty
import pwd
import re
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lan import sh
from pamtest import Accounts, Daemon, ip_br_links, stack

# -color=never: Debian 13's ip colours its output on a terminal.
SCRIPT = ('readlink /proc/self/ns/net; ip -color=never -br link; echo "netns=$VXVDEX_NETNS"; '
          'echo "pwd=$(pwd)"; '
          'echo VX""END; exit\n')


def console_login(stack_file: Path, user: str, timeout: float = 20) -> tuple[str, int]:
    """Log user in on a new pty, type SCRIPT into the shell; return all output and login's status."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvp("unshare", ["unshare", "--mount", "--propagation", "slave", "sh", "-c",
                                  'mount --bind "$0" /etc/pam.d/login && exec /bin/login -f "$1"',
                                  str(stack_file), user])
        finally:
            os._exit(127)
    output, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not typed and (b"$ " in output or b"# " in output):
                os.write(master, SCRIPT.encode())
                typed = True
            if not select.select([master], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: no terminal side open, for good once login has ended
                if ended(pid):
                    break
                time.sleep(0.05)  # Debian 13's login hangs its terminal up (vhangup), then reopens it
                continue
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
        status = reap(pid, deadline + 10)
    return output.decode(errors="replace"), status


def ended(pid: int) -> bool:
    """Whether pid has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def reap(pid: int, deadline: float) -> int:
    """Wait for login to end (it closes the PAM session after the shell); kill it at the deadline."""
    while True:
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.05)


@pytest.fixture
def alice(accounts: Accounts, workdir: Path) -> tuple[str, str]:
    """A user with a home of her own (in workdir: removed with it)."""
    group = accounts.group("l")
    user = accounts.user("l", group)
    home = workdir / f"home-{user}"
    home.mkdir(mode=0o700)
    os.chown(home, pwd.getpwnam(user).pw_uid, -1)
    sh("usermod", "--home", str(home), user)
    return group, user


def test_console_login_lands_in_namespace(module: Path, daemons: Callable[..., Daemon], workdir: Path,
                                          alice: tuple[str, str]) -> None:
    group, user = alice
    h1 = daemons(1, [group])
    stack_file = workdir / "login.pam"
    stack_file.write_text(stack(module, f"socket={h1.socket}"))

    out, status = console_login(stack_file, user)
    assert "VXEND" in out, f"no shell: {out}"
    assert os.waitstatus_to_exitcode(status) == 0, out
    inode = int(re.search(r"net:\[(\d+)\]", out).group(1))  # type: ignore[union-attr]
    assert inode == h1.netns_inode(user)
    assert ip_br_links(out) == {"lo", "vde0"}, out
    assert f"netns={h1.netns(user)}" in out
    assert f"pwd={pwd.getpwnam(user).pw_dir}" in out, "login went to the user's home"
    sessions = json.loads(h1.ask(f"status {user}").text)["sessions"]
    assert sessions == [], "login closed its session when the shell exited"

    h1.stop()
    out, status = console_login(stack_file, user)
    assert "VXEND" not in out and "cannot reach vxvdexd" in out, out
    assert os.waitstatus_to_exitcode(status) != 0
