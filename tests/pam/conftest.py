"""Fixtures for the PAM module tests (root only).

Everything a test creates carries a per-test token and is removed by the
fixture that created it, also when the test fails: users and groups
(`accounts`), PAM service files /etc/pam.d/vxvdex-test-* (`pam_service`), the
simulated hosts, the users' namespaces the daemons made and every process
started (`lan`, `daemons`). `nothing_left` then checks that it is all gone.
Namespaces are named vxp<token>-... (not vxt...: the netns tier, which may run
at the same time, counts vxt* namespaces as its own leftovers).

    host h1 (netns)                        host h2 (netns)
    vxvdexd  run dir WORK/h1               vxvdexd  run dir WORK/h2
    sshd (private mount ns)                 ssh client
    PREFIX-h1-USER: vde0 <- endpoint       PREFIX-h2-USER: vde0 <- endpoint
        |                                       |
    ---eth0------------- br0 (netns "lan") ---eth0---
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lan import REPO, Lan, leftovers, sh
from pamtest import Accounts, Daemon

MODULE_DIR = REPO / "pam_module"
MODULE = MODULE_DIR / "pam_vxvdex.so"
PAM_D = Path("/etc/pam.d")
SERVICE_PREFIX = "vxvdex-test-"
ENDPOINT_USER = "vxvdex-endpoint"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: users, PAM service files, namespaces, daemons")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def module() -> Path:
    """pam_vxvdex.so, built (and its exports checked) once per run; or the module named
    by $VXVDEX_PAM_MODULE (an installed one, e.g. /lib/x86_64-linux-gnu/security/pam_vxvdex.so)."""
    if os.environ.get("VXVDEX_PAM_MODULE"):
        return Path(os.environ["VXVDEX_PAM_MODULE"]).resolve()
    sh("make", "-s", "-C", str(MODULE_DIR), "all", "check")
    return MODULE


@pytest.fixture(scope="session", autouse=True)
def endpoint_user() -> Iterator[None]:
    """vxvdexd runs endpoints as this system user; create it if missing."""
    if os.geteuid() != 0:
        yield
        return
    try:
        pwd.getpwnam(ENDPOINT_USER)
        created = False
    except KeyError:
        sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ENDPOINT_USER)
        created = True
    yield
    if created:
        sh("userdel", ENDPOINT_USER, check=False)


@pytest.fixture
def token() -> str:
    """A short unique token for the names of this test's things."""
    return secrets.token_hex(3)


# ---- users and groups ------------------------------------------------------------

@pytest.fixture
def accounts(token: str) -> Iterator[Accounts]:
    acc = Accounts(token)
    try:
        yield acc
    finally:
        stray = acc.remove()
        for name in acc.users:
            with pytest.raises(KeyError):
                pwd.getpwnam(name)
        for name in acc.groups:
            with pytest.raises(KeyError):
                grp.getgrnam(name)
        assert not stray, f"processes of test users were left running: {stray}"


# ---- PAM service files -------------------------------------------------------------

@pytest.fixture
def pam_service(token: str) -> Iterator[Callable[[str], str]]:
    """A factory: write a PAM service file for this test, get its name."""
    made: list[Path] = []

    def write(text: str) -> str:
        path = PAM_D / f"{SERVICE_PREFIX}{token}-{len(made)}"
        path.write_text(text)
        made.append(path)
        return path.name

    try:
        yield write
    finally:
        for path in made:
            path.unlink(missing_ok=True)


@pytest.fixture
def workdir(token: str) -> Iterator[Path]:
    """A world-traversable directory for run dirs, keys and configs (tmp_path is 0700:
    endpoints, which run as vxvdex-endpoint, and sshd reading keys as the user need in)."""
    path = Path(tempfile.mkdtemp(prefix=f"vxp{token}-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lan(token: str, accounts: Accounts) -> Iterator[Lan]:
    """Two hosts; afterwards also the daemons' user namespaces are removed (before the
    test accounts go: processes in those namespaces may belong to them)."""
    with Lan(hosts=2, prefix=f"vxp{token}") as built:
        try:
            for i in (1, 2):  # as systemd does on a booted host (Debian 13's ping relies on it)
                built.run(built.host(i), "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
            yield built
        finally:
            for proc in reversed(built.procs):
                built.stop(proc)
            for name in leftovers(built.prefix):
                if name not in built.namespaces:
                    for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                        os.kill(int(pid), signal.SIGKILL)
                    sh("ip", "netns", "del", name, check=False)
    assert leftovers(built.prefix) == [], "namespaces left behind"


@pytest.fixture
def daemons(lan: Lan, workdir: Path) -> Iterator[Callable[..., Daemon]]:
    """A factory: start vxvdexd on host i with these settings (YAML lines);
    stopped at the end (which also removes their port guards)."""
    started: list[Daemon] = []

    def start(host: int, groups: list[str], **settings: object) -> Daemon:
        run_dir = workdir / f"h{host}"
        run_dir.mkdir(mode=0o755)
        assert len(str(run_dir / "control")) < 100, "socket path too long for sun_path"
        lines = [f"run_dir: {run_dir}", f"netns_name: {lan.prefix}-h{host}-{{user}}",
                 f"managed_groups: [{', '.join(groups)}]", "log_level: debug"]
        lines += [f"{key}: {value}" for key, value in settings.items()]
        (run_dir / "vxvdex.yaml").write_text("\n".join(lines) + "\n")
        started.append(Daemon(lan, host, run_dir, workdir / f"vxvdexd-h{host}.log"))
        return started[-1].start()

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture(autouse=True)
def nothing_left(token: str) -> Iterator[None]:
    """After each test: no service file, namespace, user or group of ours remains."""
    yield
    assert not list(PAM_D.glob(f"{SERVICE_PREFIX}{token}*")), "PAM service files left behind"
    assert leftovers(f"vxp{token}") == [], "namespaces left behind"
    assert not [p.pw_name for p in pwd.getpwall() if p.pw_name.endswith(token)], "users left behind"
    assert not [g.gr_name for g in grp.getgrall() if g.gr_name.endswith(token)], "groups left behind"
