"""The control socket's accept loop: bounded in threads, descriptors and time.

The socket is mode 0666, so every local user can connect. What one of them
can hold is bounded: a connection costs no thread until its request has
arrived, at most PER_UID connections of one non-root uid are open at a time
(more are closed at once), all non-root uids together hold at most
OTHERS_MAX, and a request must arrive within DEADLINE seconds. Requests are
answered by fixed pools of threads started up front (never one per
connection): one pool for root (pam_vxvdex runs as root in sshd, login,
cron), one for everybody else, so users' requests never delay logins.
Root's connections are never closed unanswered: past ROOT_MAX in progress,
accepting pauses and logins wait in the kernel's backlog.
Running out of descriptors (EMFILE) sheds idle non-root connections and
never ends the loop.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import queue
import selectors
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from vxvdex import control

log = logging.getLogger("vxvdexd")
DEADLINE = 2.0          # seconds from connect to the request (the module sends at once)
PER_UID = 8             # concurrent connections of one non-root uid
OTHERS_MAX = 512        # concurrent connections of all non-root uids
ROOT_MAX = 4096         # root connections (logins) in progress before accepting pauses
ROOT_WORKERS = 16
ACCEPT_BATCH = 64       # connections accepted before the arrived requests are read
OTHER_WORKERS = 4
OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
NS_GET_PARENT, NS_GET_OWNER_UID = 0xB702, 0xB704
INIT_USERNS = os.stat("/proc/self/ns/user").st_ino
UNKNOWN = -1            # the counting key of a peer gone before it was looked at

Handler = Callable[[socket.socket, bytes, int], None]


@dataclass
class Pending:
    conn: socket.socket
    uid: int
    deadline: float
    key: int            # whom the connection counts for (see owner())


def owner(pid: int, uid: int) -> int:
    """Whom a peer's connections count for: its uid, or, in a user namespace,
    the uid that made the outermost one (else one user's subordinate uids,
    /etc/subuid, would each get the per-uid cap); UNKNOWN if it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return UNKNOWN
    try:
        for _level in range(33):
            if os.fstat(fd).st_ino == INIT_USERNS:
                return uid
            parent = fcntl.ioctl(fd, NS_GET_PARENT)
            if os.fstat(parent).st_ino == INIT_USERNS:
                os.close(parent)
                found = bytearray(4)
                fcntl.ioctl(fd, NS_GET_OWNER_UID, found, True)
                return int.from_bytes(found, sys.byteorder)
            os.close(fd)
            fd = parent
        return UNKNOWN
    except OSError:
        return UNKNOWN
    finally:
        os.close(fd)


class Server:
    """Accept connections on sock and hand each complete request to handle(conn, raw, uid)."""

    def __init__(self, sock: socket.socket, handle: Handler, stopping: threading.Event) -> None:
        self.sock = sock
        self.handle = handle
        self.stopping = stopping
        self.sel = selectors.DefaultSelector()
        self.pending: dict[int, Pending] = {}
        self.count: Counter[int] = Counter()   # open connections per uid, pending or in work
        self.count_lock = threading.Lock()
        self.queues = {True: queue.SimpleQueue[tuple[socket.socket, bytes, int, int]](),
                       False: queue.SimpleQueue[tuple[socket.socket, bytes, int, int]]()}
        self.last_warning = 0.0
        self.paused_until = 0.0

    # ---- workers -----------------------------------------------------------------
    def start_workers(self) -> None:
        """Start the pools now: a failure here stops the daemon at start, never later."""
        for root, n in ((True, ROOT_WORKERS), (False, OTHER_WORKERS)):
            for i in range(n):
                threading.Thread(target=self._work, args=(self.queues[root],), daemon=True,
                                 name=f"control-{'root' if root else 'user'}-{i}").start()

    def _work(self, q: queue.SimpleQueue[tuple[socket.socket, bytes, int, int]]) -> None:
        while True:
            conn, raw, uid, key = q.get()
            try:
                self.handle(conn, raw, uid)
            except Exception:  # one bad request must never take a worker away
                log.exception("control request %r of uid %d", raw[:64], uid)
            finally:
                conn.close()
                self._release(key)

    def _release(self, uid: int) -> None:
        with self.count_lock:
            self.count[uid] -= 1
            if self.count[uid] <= 0:
                del self.count[uid]

    # ---- the loop ----------------------------------------------------------------
    def serve(self) -> None:
        self.sock.setblocking(False)
        self.sel.register(self.sock, selectors.EVENT_READ)
        while not self.stopping.is_set():
            now = time.monotonic()
            listening = now >= self.paused_until
            for key, _ in self.sel.select(self._timeout(now)):
                if key.fileobj is self.sock:
                    if listening:
                        self._accept_all()
                else:
                    self._readable(key.fd)
            self._expire(time.monotonic())

    def _timeout(self, now: float) -> float:
        soonest = min((p.deadline for p in self.pending.values()), default=now + 1.0)
        if now < self.paused_until:
            soonest = min(soonest, self.paused_until)
        return max(0.0, min(soonest - now, 1.0))

    def _accept_all(self) -> None:
        # A batch, not until the backlog is empty: clients that reconnect as
        # fast as they are closed would keep it full, and the requests that
        # have arrived would wait past their deadline (logins refused).
        for _ in range(ACCEPT_BATCH):
            if self.stopping.is_set():
                return
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if self.stopping.is_set() or err.errno not in OUT_OF_FDS:
                    if not self.stopping.is_set():
                        self._warn(f"accept on the control socket failed: {err}")
                    return
                self._out_of_fds(err)
                return
            self._admit(conn)
            if time.monotonic() < self.paused_until:
                return

    def _admit(self, conn: socket.socket) -> None:
        try:
            pid, uid, _gid = control.peer_ids(conn)
        except OSError:
            conn.close()
            return
        key = uid if uid == 0 else owner(pid, uid)
        with self.count_lock:
            others = sum(n for u, n in self.count.items() if u != 0)
            full = uid != 0 and (self.count[key] >= PER_UID or others >= OTHERS_MAX)
            if not full:
                self.count[key] += 1
            root_busy = uid == 0 and self.count[0] >= ROOT_MAX
        if full:
            conn.close()
            self._warn(f"uid {uid} holds too many control connections: closing new ones")
            return
        if root_busy:
            # Root's connections are logins: closing one refuses a login. Stop
            # accepting for a moment instead; the next ones wait in the backlog.
            self.paused_until = time.monotonic() + 0.05
        conn.setblocking(False)
        self.pending[conn.fileno()] = Pending(conn, uid, time.monotonic() + DEADLINE, key)
        self.sel.register(conn, selectors.EVENT_READ)

    def _readable(self, fd: int) -> None:
        p = self.pending.pop(fd)
        self.sel.unregister(p.conn)
        try:
            raw = p.conn.recv(control.MAX_MESSAGE + 1)
        except OSError:
            raw = b""
        # An empty raw is an empty message or a peer that left: the handler
        # refuses it, and sending the refusal to a departed peer fails harmlessly.
        p.conn.settimeout(DEADLINE)  # bounds the answer's send to a peer that stopped reading
        self.queues[p.uid == 0].put((p.conn, raw, p.uid, p.key))

    def _drop(self, p: Pending) -> None:
        p.conn.close()
        self._release(p.key)

    def _expire(self, now: float) -> None:
        for fd, p in list(self.pending.items()):
            if p.deadline <= now:
                del self.pending[fd]
                self.sel.unregister(p.conn)
                self._drop(p)

    def _out_of_fds(self, err: OSError) -> None:
        """Shed the idle connections of non-root users; if there are none, stop
        accepting for a moment instead of spinning on a readable socket."""
        idle = [fd for fd, p in self.pending.items() if p.uid != 0]
        for fd in idle:
            p = self.pending.pop(fd)
            self.sel.unregister(p.conn)
            self._drop(p)
        if not idle:
            self.paused_until = time.monotonic() + 0.05
        self._warn(f"out of descriptors ({err.strerror}): closed {len(idle)} idle user connections; "
                   "raise LimitNOFILE in vxvdex.service if this repeats")

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self.last_warning >= 10:  # an attack must not flood the journal
            self.last_warning = now
            log.warning("%s", text)
