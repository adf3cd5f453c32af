"""pam_vxvdex.so against vxvdexd and against a scripted fake daemon.

Sessions are opened by child processes (python-pam in probe.py, pamtester),
never by the test process itself, whose namespaces must not change.
"""

from __future__ import annotations

import array
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lan import Lan, sh
from pamtest import Accounts, Daemon, stack

PROBE = Path(__file__).resolve().parent / "probe.py"
PAM_SUCCESS, PAM_SESSION_ERR = 0, 14
HOST_NETNS = os.stat("/proc/self/ns/net").st_ino
SESSION_RE = re.compile(r"^[A-Za-z0-9_.@$-]{1,64}$")


def probe(service: str, user: str) -> dict:
    res = sh(sys.executable, str(PROBE), service, user, timeout=30)
    return json.loads(res.stdout)


def probe_in_shared_mounts(service: str, user: str) -> tuple[dict, str]:
    """probe() from a mount namespace whose mounts are shared (as under systemd), private from
    the machine's; also return what that namespace sees afterwards, so that mounts the session
    makes would show if they propagated back."""
    after = "echo; cat /etc/resolv.conf; ls /sys/class/net"
    res = sh("unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'mount --make-rshared / && "$@" && {{ {after}; }}', "sh", sys.executable, str(PROBE),
             service, user, timeout=30)
    first, _, rest = res.stdout.partition("\n")
    return json.loads(first), rest


def pamtester(service: str, user: str, *ops: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return sh("pamtester", "-v", service, user, *(ops or ("open_session", "close_session")),
              check=False, timeout=timeout)


@pytest.fixture
def people(accounts: Accounts) -> dict[str, str]:
    """alice and bob are managed (each with a primary group of their own), carol is not."""
    ga, gb, gc = accounts.group("a"), accounts.group("b"), accounts.group("c")
    return {"ga": ga, "gb": gb, "alice": accounts.user("a", ga), "bob": accounts.user("b", gb),
            "carol": accounts.user("c", gc)}


@pytest.fixture
def h1(daemons: Callable[..., Daemon], people: dict[str, str]) -> Daemon:
    return daemons(1, [people["ga"], people["gb"]])


# ---- with the real daemon --------------------------------------------------------------

def test_managed_user_lands_in_own_namespace(module: Path, pam_service: Callable[[str], str],
                                             h1: Daemon, people: dict[str, str]) -> None:
    service = pam_service(stack(module, f"socket={h1.socket} debug"))
    out = probe(service, people["alice"])
    assert out["open"] == PAM_SUCCESS, out
    assert out["netns"] == h1.netns_inode(people["alice"]) != HOST_NETNS
    assert out["links"] == {"lo": True, "vde0": True}, "only lo and an up vde0, no host interface"
    assert out["env"] == h1.netns(people["alice"])
    assert out["close"] == PAM_SUCCESS
    status = h1.ask(f"status {people['alice']}")
    assert json.loads(status.text)["sessions"] == [], "close_session told the daemon"

    again = probe(service, people["alice"])
    assert again["netns"] == out["netns"], "a repeat login joins the same namespace"
    assert probe(service, people["bob"])["netns"] == h1.netns_inode(people["bob"]) != out["netns"]


@pytest.mark.parametrize("who", ["carol", "root"])
def test_unmanaged_user_keeps_host_network(module: Path, pam_service: Callable[[str], str],
                                           h1: Daemon, people: dict[str, str], who: str) -> None:
    user = people.get(who, who)
    out = probe(pam_service(stack(module, f"socket={h1.socket}")), user)
    assert out["open"] == PAM_SUCCESS, out
    assert out["netns"] == HOST_NETNS
    assert not os.path.exists(f"/run/netns/{h1.netns(user)}")


def test_daemon_down_fails_closed(module: Path, pam_service: Callable[[str], str],
                                  h1: Daemon, people: dict[str, str]) -> None:
    service = pam_service(stack(module, f"socket={h1.socket}"))
    h1.stop()
    alice = probe(service, people["alice"])
    assert alice["open"] == PAM_SESSION_ERR, alice
    assert alice["netns"] == HOST_NETNS
    assert any("cannot reach vxvdexd" in m for m in alice["messages"]), "the user is told why"
    carol = probe(service, people["carol"])
    assert carol["open"] == PAM_SESSION_ERR, "unknown whether carol is managed: refused too"
    root = probe(service, "root")
    assert root["open"] == PAM_SUCCESS and root["netns"] == HOST_NETNS, "root can still log in to repair"


def test_pamtester(module: Path, pam_service: Callable[[str], str], h1: Daemon,
                   people: dict[str, str]) -> None:
    service = pam_service(stack(module, f"socket={h1.socket}"))
    for user in (people["alice"], people["carol"], "root"):
        res = pamtester(service, user)
        assert res.returncode == 0, res.stderr
        assert "successfully opened a session" in res.stdout
    h1.stop()
    res = pamtester(service, people["alice"])
    assert res.returncode != 0 and "cannot reach vxvdexd" in res.stderr, res.stderr
    assert pamtester(service, "root").returncode == 0


def test_mountns_shows_the_namespace(module: Path, pam_service: Callable[[str], str], h1: Daemon,
                                     people: dict[str, str]) -> None:
    """With mountns, /sys/class/net and /etc/netns/NAME/resolv.conf follow the namespace."""
    etc_netns = Path("/etc/netns")
    made_etc_netns = not etc_netns.exists()
    conf = etc_netns / h1.netns(people["alice"])
    host_resolv = Path("/etc/resolv.conf").read_text()
    try:
        conf.mkdir(parents=True)
        (conf / "resolv.conf").write_text("nameserver 192.0.2.53\n")
        service = pam_service(stack(module, f"socket={h1.socket} mountns"))
        out, parent_view = probe_in_shared_mounts(service, people["alice"])
        assert out["open"] == PAM_SUCCESS, out
        assert out["sys_class_net"] == ["lo", "vde0"]
        assert out["resolv_conf"] == "nameserver 192.0.2.53\n"
        assert out["cgroup_visible"], "/sys/fs/cgroup is carried over"
        assert host_resolv in parent_view and "vde0" not in parent_view, "mounts did not propagate back"
        assert Path("/etc/resolv.conf").read_text() == host_resolv
        assert "vde0" not in os.listdir("/sys/class/net")
    finally:
        (conf / "resolv.conf").unlink(missing_ok=True)
        if conf.exists():
            conf.rmdir()
        if made_etc_netns and etc_netns.exists():
            etc_netns.rmdir()


# ---- against a fake daemon: the protocol edge cases ------------------------------------

@dataclass
class Fake:
    """A control socket that answers every request with `reply` (and passes `fd`)."""
    path: Path
    reply: str | None          # None: never answer
    fd_path: str | None = None
    hangup: bool = False       # close without answering
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(str(self.path))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                self.requests.append(conn.recv(4096).decode())
                if self.hangup:
                    continue
                if self.reply is None:
                    self.stopping.wait(10)
                    continue
                fds = [os.open(self.fd_path, os.O_RDONLY)] if self.fd_path else []
                try:
                    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
                    conn.sendmsg([self.reply.encode()], rights if fds else [])
                finally:
                    for fd in fds:
                        os.close(fd)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def fake(workdir: Path) -> Iterator[Callable[..., Fake]]:
    made: list[Fake] = []

    def start(reply: str | None, **kw: object) -> Fake:
        made.append(Fake(workdir / f"fake{len(made)}", reply, **kw))  # type: ignore[arg-type]
        return made[-1]

    yield start
    for f in made:
        f.close()


# (case, reply, attach, user, session opened?)
CASES = [
    ("ok with namespace", "ok NAME", "netns", "alice", True),
    ("unmanaged", "unmanaged not in a managed group", None, "alice", True),
    ("refused", "error EIO the endpoint did not come up", None, "alice", False),
    ("ok without descriptor", "ok NAME", None, "alice", False),
    ("ok with a file, not a namespace", "ok NAME", "/dev/null", "alice", False),
    ("ok with a bad name", "ok ../../etc", "netns", "alice", False),
    ("nonsense answer", "maybe later", None, "alice", False),
    ("hung up", "HANGUP", None, "alice", False),
    ("never answers", None, None, "alice", False),
    ("user name vxvdexd cannot take", "unmanaged x", None, "bad/name", False),
]


@pytest.mark.parametrize(("case", "reply", "attach", "user", "opened"), CASES, ids=[c[0] for c in CASES])
def test_answers(module: Path, pam_service: Callable[[str], str], fake: Callable[..., Fake], lan: Lan,
                 people: dict[str, str], case: str, reply: str | None, attach: str | None, user: str,
                 opened: bool) -> None:
    user = people.get(user, user)
    fd_path = f"/run/netns/{lan.host(1)}" if attach == "netns" else attach
    server = fake(None if reply is None else reply.replace("NAME", lan.host(1)), fd_path=fd_path,
                  hangup=reply == "HANGUP")
    service = pam_service(stack(module, f"socket={server.path} timeout=1"))
    t0 = time.monotonic()
    res = pamtester(service, user)
    assert (res.returncode == 0) == opened, res.stderr
    assert time.monotonic() - t0 < 5, "a silent daemon fails the login after timeout=1"
    if user == "bad/name":
        assert server.requests == [], "an invalid name is refused before asking"
        return
    verb, name, session = server.requests[0].split(" ")
    assert (verb, name) == ("open", user) and SESSION_RE.match(session)
    if case == "ok with namespace":
        assert server.requests[1] == f"close {user} {session}", "close names the session opened"
    else:
        assert len(server.requests) <= 2, "at most a close after a failed enter"


def test_peer_must_be_root(module: Path, pam_service: Callable[[str], str], workdir: Path,
                           people: dict[str, str]) -> None:
    """A socket served by anyone but root is not vxvdexd: its 'unmanaged' is not believed."""
    sockdir = workdir / "nobody"
    sockdir.mkdir()
    os.chown(sockdir, 65534, 65534)
    path = sockdir / "control"
    server = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1]);"
         "s.listen(); print('ready', flush=True)\n"
         "while True:\n c,_=s.accept(); c.recv(4096); c.send(b'unmanaged trust me'); c.close()", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        res = pamtester(pam_service(stack(module, f"socket={path}")), people["alice"])
        assert res.returncode != 0 and "Operation not permitted" in res.stderr, res.stderr
    finally:
        server.kill()
        server.wait()
