"""The control protocol of vxvdexd (used by pam_vxvdex.so and vxvdex-session).

Transport: a SOCK_SEQPACKET UNIX socket, RUN_DIR/control, mode 0666; each
request is one message of at most 4096 bytes, each answer one message of at
most 1 MiB. The daemon
learns who is asking from SO_PEERCRED, never from the message: root may act
for any user, anyone else only for themself.

Request: `VERB [ARG ...]`, ASCII words separated by single spaces.

    open USER [SESSION]     provision USER's namespace (if managed) and pass it;
                            only root starts a session (pam_vxvdex runs as
                            root), a user may rejoin one of their own
    close USER [SESSION]    the session ended
    status [USER [SESSION]] the user's namespace, ports, counters, up to 64 peers (JSON);
                            scope: session without SESSION: a list, one per session
    list [MAC]              every provisioned user, a summary without peers (root only, JSON);
                            with MAC (12 hex digits): the peers learned with that MAC
    reprovision [USER [SESSION]]  repair: namespace, taps, endpoints
    up / down [USER [SESSION]]    bring the user's taps up or down
                            (scope: session without SESSION: all the user's)
    remove USER [force]     end USER's namespaces and endpoints now (root only;
                            EBUSY while processes are in them, unless force);
                            TEXT is how many processes were still in them
    version

Answer: the first word says how it went, the rest of the line follows.

    ok [TEXT]               success; `open` attaches the namespace as a
                            descriptor (SCM_RIGHTS) and TEXT is its name;
                            read commands give JSON as TEXT
    unmanaged TEXT          the user is not managed: leave them alone
    error CODE TEXT         refused or failed; CODE is an errno name
                            (EPERM, ENOENT, EINVAL, EIO, ...), TEXT says why
"""

from __future__ import annotations

import array
import errno
import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

MAX_MESSAGE = 4096          # a request
MAX_ANSWER = 1 << 20        # an answer (`list` of many users is long)
SO_SNDBUFFORCE = 32
WORD_RE = re.compile(r"^[A-Za-z0-9_.@$-]{1,64}$")
VERBS = {"open": (1, 2), "close": (1, 2), "status": (0, 2), "list": (0, 1), "reprovision": (0, 2),
         "up": (0, 2), "down": (0, 2), "version": (0, 0), "remove": (1, 2),
         "gateways": (0, 0)}


class ProtocolError(ValueError):
    """A request that does not follow the protocol."""


@dataclass(frozen=True)
class Request:
    verb: str
    args: tuple[str, ...]


def parse_request(raw: bytes) -> Request:
    """Check a request message strictly; raise ProtocolError saying what is wrong."""
    if not raw:
        raise ProtocolError("empty request")
    if len(raw) > MAX_MESSAGE:
        raise ProtocolError(f"request longer than {MAX_MESSAGE} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("request is not ASCII text") from None
    words = text.rstrip("\n").split(" ")
    verb, args = words[0], tuple(words[1:])
    if verb not in VERBS:
        raise ProtocolError(f"unknown verb {verb[:32]!r}: one of {', '.join(VERBS)}")
    low, high = VERBS[verb]
    if not low <= len(args) <= high:
        raise ProtocolError(f"{verb} takes {low}-{high} arguments, got {len(args)}")
    for arg in args:
        if not WORD_RE.fullmatch(arg):  # not match(): its $ lets "name\n" through
            raise ProtocolError(f"bad argument {arg[:32]!r}: 1-64 of A-Z a-z 0-9 _ . @ $ -")
    return Request(verb, args)


def peer_ids(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer, from the kernel."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid, gid = array.array("i", creds)
    return pid, uid, gid


def send_answer(sock: socket.socket, text: str, fd: int | None = None) -> None:
    data = text.encode()
    if len(data) > MAX_ANSWER:
        data = b"error EMSGSIZE answer too long"
    if len(data) > 100_000:  # one message must fit the socket's send buffer
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, len(data) + 4096)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, len(data) + 4096)
    if fd is None:
        sock.send(data)
    else:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


# ---- the client side ---------------------------------------------------------

class DaemonUnavailable(ConnectionError):
    """vxvdexd does not answer on its socket."""


@dataclass
class Answer:
    status: str          # ok, unmanaged, error
    code: str            # errno name for errors
    text: str
    fd: int | None = None

    def json(self) -> object:
        return json.loads(self.text)


def socket_path(run_dir: Path) -> Path:
    return run_dir / "control"


def _connect(path: Path, timeout: float) -> socket.socket:
    """Connect within timeout. A full listen backlog (EAGAIN: the daemon is
    busy, not gone) is waited out until then; anything else means no daemon."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return sock
        except OSError as err:
            sock.close()
            busy = err.errno == errno.EAGAIN
            if not busy or time.monotonic() + pause > deadline:
                raise DaemonUnavailable(err.errno or errno.ECONNREFUSED,
                                        f"vxvdexd is too busy to answer on {path} (tried for {timeout:g} s)"
                                        if busy else f"vxvdexd is not running (no answer on {path}): "
                                        "start it with `systemctl start vxvdex`") from None
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def ask(run_dir: Path, request: str, timeout: float = 30.0) -> Answer:
    """Send one request and read the answer (and a passed descriptor)."""
    sock = _connect(socket_path(run_dir), timeout)
    with sock:
        sock.send(request.encode())
        fds = array.array("i")
        msg, anc, _f, _a = sock.recvmsg(MAX_ANSWER, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
    status, _, rest = msg.decode(errors="replace").partition(" ")
    code = ""
    if status == "error":
        code, _, rest = rest.partition(" ")
    return Answer(status, code, rest, fds[0] if fds else None)
