"""What the machine lacks, each command says in one line with what to do, and
a documented exit status; never a traceback (issue 10, item 1).

Every case runs in a network and mount namespace of its own (unshare): a
tmpfs over /dev/net or a full tmpfs there changes nothing on the machine,
and both namespaces vanish with the command."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from lan import tool

NOBODY = 65534
# A veth uplink (both ends in the sandbox) with a multicast route: the VLAN can be joined.
ROUTED = ("ip link add vxu0 type veth peer name vxu1; ip link set vxu1 up; ip link set vxu0 up; "
          "ip address add 192.0.2.1/24 dev vxu0; ip route add 224.0.0.0/4 dev vxu0")
TUN_0600 = "mount -t tmpfs vxt /mnt; mknod -m 0600 /mnt/tun c 10 200; " \
           "mount --bind /mnt/tun /dev/net/tun"
TUN_0666 = TUN_0600.replace("0600", "0666")
NO_TUN = "mount -t tmpfs vxt /dev/net"
FULL = "mount -t tmpfs -o size=64k vxt /mnt; " \
       "dd if=/dev/zero of=/mnt/fill bs=4k 2>/dev/null || true"
# Runs the command holding 0.0.0.0:14789 without SO_REUSEADDR (as kernel vxlan does).
HOLD_PORT = [sys.executable, "-c", "import os, socket, sys; s = socket.socket(socket.AF_INET, "
             "socket.SOCK_DGRAM); s.bind(('0.0.0.0', 14789)); s.set_inheritable(True); "
             "os.execv(sys.argv[1], sys.argv[1:])"]


def sandboxed(setup: str, cmd: list[str], user: int | None = None) -> subprocess.CompletedProcess:
    """setup (shell, as root), then cmd (as user), in new network and mount namespaces;
    whatever setup left running there is ended with it."""
    drop = f"setpriv --reuid={user} --regid={user} --clear-groups -- " if user is not None else ""
    script = f"set -e\n{setup}\nexec {drop}{shlex.join(cmd)}"
    args = ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: only what this test started
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


LOG_LINE = re.compile(r"\S+: \d{4}-\d\d-\d\d \d\d:")  # the daemon's log, before the error


def assert_one_line(res: subprocess.CompletedProcess, prog: str, code: int, *named: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    mine = [line for line in res.stderr.splitlines()
            if line.startswith(f"{prog}: ") and not LOG_LINE.match(line)]
    assert len(mine) == 1 and mine == res.stderr.splitlines()[-1:], res.stderr
    for word in named:
        assert word in mine[0], mine[0]


# ---- vxvdex-plug ---------------------------------------------------------------

PLUG_CASES = {
    # case: (setup, as user, before the command, its options, words of the line)
    "no /dev/net/tun": (NO_TUN, None, [], [], ["tap://vxt0", "/dev/net/tun", "modprobe tun"]),
    "/dev/net/tun mode 0600": (TUN_0600, NOBODY, [], [], ["tap://vxt0", "/dev/net/tun", "chmod 0666"]),
    "no privilege": (TUN_0666, NOBODY, [], [], ["tap://vxt0", "CAP_NET_ADMIN"]),
    "no multicast route": ("", None, [], [], ["239.0.3.232", "multicast route", "ip route add"]),
    "address in use": (ROUTED, None, HOLD_PORT, [], ["port 14789", "in use", "ss -lupn"]),
    "missing status directory": (ROUTED, None, [], ["--status", "/run/vxt-none/plug.json"],
                                 ["/run/vxt-none/plug.json", "No such file", "create it"]),
    "full disk": (f"{ROUTED}; {FULL}", None, [], ["--status", "/mnt/plug.json"],
                  ["/mnt/plug.json", "No space", "full"]),
}


@pytest.mark.parametrize("case", PLUG_CASES)
def test_plug_names_what_is_missing(case: str) -> None:
    setup, user, before, extra, named = PLUG_CASES[case]
    res = sandboxed(setup, [*before, tool("vxvdex-plug"), "--transport=udp", *extra,
                            "vxvde:///grp=1000", "tap://vxt0"], user)
    assert_one_line(res, "vxvdex-plug", 1, *named)


def test_plug_control_runs_where_nothing_is_missing() -> None:
    """The control: in the same sandbox with a route, a tun device and room,
    the command joins (and is stopped by the timeout of `timeout`)."""
    cmd = ["timeout", "--preserve-status", "-s", "INT", "2", tool("vxvdex-plug"),
           "--status", "/mnt/plug.json", "vxvde:///grp=1000", "tap://vxt0"]
    res = sandboxed(f"{ROUTED}; {TUN_0666}", cmd)
    assert res.returncode == 0 and "joined vxvde://" in res.stderr, res.stderr


# ---- vxvdexd ---------------------------------------------------------------------


@pytest.fixture
def conf_dir() -> Iterator[Path]:
    """A directory that nobody can read too (pytest's tmp_path is root's only)."""
    made = Path(tempfile.mkdtemp(prefix="vxt-cli-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made)


def daemon_config(conf_dir: Path, run_dir: str, extra: str = "") -> str:
    cfg = conf_dir / "vxvdexd.yaml"
    # nogroup: a managed group must exist (vxvdexd refuses one that does not resolve)
    cfg.write_text(f"managed_groups: [nogroup]\nrun_dir: {run_dir}\n{extra}")
    cfg.chmod(0o644)
    return str(cfg)


def test_daemon_needs_root(conf_dir: Path) -> None:
    res = sandboxed("", [tool("vxvdexd"), "--config", daemon_config(conf_dir, "/mnt")], NOBODY)
    assert_one_line(res, "vxvdexd", 1, "must run as root", "systemctl start vxvdex")


def test_daemon_needs_its_capabilities(conf_dir: Path) -> None:
    """root, but without capabilities (a locked-down container)."""
    cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--",
           tool("vxvdexd"), "--config", daemon_config(conf_dir, "/mnt")]
    assert_one_line(sandboxed("", cmd), "vxvdexd", 1, "CAP_NET_ADMIN")


def test_daemon_names_a_missing_endpoint_user(conf_dir: Path) -> None:
    cfg = daemon_config(conf_dir, "/mnt", "endpoint_user: vxt-no-such-user\n")
    res = sandboxed(ROUTED, [tool("vxvdexd"), "--config", cfg])
    # A setting the host cannot satisfy: refused like any invalid setting (2), with file and line.
    assert_one_line(res, "vxvdexd", 2, "vxt-no-such-user", "adduser --system", "vxvdexd.yaml:")


def test_daemon_cannot_make_its_run_directory(conf_dir: Path) -> None:
    res = sandboxed(ROUTED, [tool("vxvdexd"), "--config", daemon_config(conf_dir, "/proc/vxt/run")])
    assert_one_line(res, "vxvdexd", 1, "/proc/vxt", "No such file")


def test_daemon_on_a_full_disk(conf_dir: Path) -> None:
    """It starts and serves (nothing it writes then needs a block); its state
    cannot be saved, which it says (state.json only helps: what runs is found
    on the machine at the next start), and it stops cleanly, no traceback."""
    answers = f"{tool('vxvdex-session')} --run-dir /mnt/d list >/dev/null 2>&1"
    script = f"{tool('vxvdexd')} --config {daemon_config(conf_dir, '/mnt/d')} & " \
             f"for i in $(seq 300); do {answers} && break; sleep 0.1; done; kill -TERM $!; wait $!"
    res = sandboxed(f"{ROUTED}; {FULL}", ["sh", "-c", script])
    assert "listening on /mnt/d/control" in res.stderr, res.stderr
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert [line for line in res.stderr.splitlines()
            if "WARNING could not save state.json (No space left on device)" in line], res.stderr


def test_a_second_daemon_on_the_same_run_directory(conf_dir: Path) -> None:
    cfg = daemon_config(conf_dir, "/mnt")
    answers = f"{tool('vxvdex-session')} --run-dir /mnt list >/dev/null 2>&1"
    first = f"{tool('vxvdexd')} --config {cfg} >/dev/null 2>&1 & " \
            f"for i in $(seq 300); do {answers} && break; sleep 0.1; done"
    res = sandboxed(f"{ROUTED}; mount -t tmpfs vxt /mnt; {first}",
                    [tool("vxvdexd"), "--config", cfg])
    assert_one_line(res, "vxvdexd", 1, "already serves /mnt/control", "systemctl stop vxvdex")


def test_daemon_without_a_multicast_route_says_so_once(conf_dir: Path) -> None:
    """It still starts (the network may come later); the log says what is missing."""
    cfg = daemon_config(conf_dir, "/mnt")
    res = sandboxed("mount -t tmpfs vxt /mnt",
                    ["timeout", "--preserve-status", "-s", "TERM", "3", tool("vxvdexd"), "--config", cfg])
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert [line for line in res.stderr.splitlines() if "multicast" in line and "WARNING" in line], res.stderr


# ---- vxvdex-session ---------------------------------------------------------------


def test_session_without_a_daemon() -> None:
    res = sandboxed("", [tool("vxvdex-session"), "--run-dir", "/run/vxt-none", "status"], NOBODY)
    assert_one_line(res, "vxvdex-session", 3, "not running", "systemctl start vxvdex")


def test_session_without_permission_on_the_socket() -> None:
    make = f"{sys.executable} -c 'import socket; socket.socket(socket.AF_UNIX, " \
           "socket.SOCK_SEQPACKET).bind(\"/mnt/control\")'"
    setup = f"mount -t tmpfs vxt /mnt; {make}; chmod 0600 /mnt/control"
    res = sandboxed(setup, [tool("vxvdex-session"), "--run-dir", "/mnt", "status"], NOBODY)
    assert_one_line(res, "vxvdex-session", 5, "no permission", "/mnt/control")


def test_session_exec_needs_root() -> None:
    cmd = [tool("vxvdex-session"), "--run-dir", "/mnt", "exec", "bob", "--", "true"]
    res = sandboxed("", cmd, NOBODY)
    assert_one_line(res, "vxvdex-session", 5, "needs root")
