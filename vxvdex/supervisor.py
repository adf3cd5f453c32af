"""Starting endpoints through the zygote and noticing when they end.

Endpoints are watched through pidfds, which work the same for the children
of this daemon's zygote and for endpoints adopted after a daemon restart.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Hashable

from .endpoint import Spec

log = logging.getLogger("vxvdexd")


class Zygote:
    """The fork server process (see zygote.py)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-m", "vxvdex.zygote", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], close_fds=True)
        theirs.close()

    def spawn(self, spec: Spec, tap_fd: int) -> int:
        """Fork an endpoint for spec with tap_fd; return its pid."""
        with self.lock:
            self.sock.sendmsg([spec.dumps()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                tap_fd.to_bytes(4, sys.byteorder))])
            answer = self.sock.recv(4096)
        if not answer:
            raise OSError("the endpoint zygote has exited")
        pid: int = json.loads(answer)["pid"]
        return pid

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Watcher:
    """Calls on_exit(key) from its own thread when a watched process ends."""

    def __init__(self, on_exit: Callable[[Hashable], None]) -> None:
        self.on_exit = on_exit
        self.ep = select.epoll()
        self.by_fd: dict[int, tuple[Hashable, int]] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self.thread.start()

    def watch(self, key: Hashable, pid: int) -> bool:
        """Watch pid; False if it is already gone."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        with self.lock:
            self.by_fd[fd] = (key, pid)
            self.ep.register(fd, select.EPOLLIN)
        return True

    def unwatch(self, key: Hashable) -> None:
        with self.lock:
            for fd, (k, _pid) in list(self.by_fd.items()):
                if k == key:
                    self._forget(fd)

    def _forget(self, fd: int) -> None:
        self.ep.unregister(fd)
        os.close(fd)
        del self.by_fd[fd]

    def _loop(self) -> None:
        while True:
            for fd, _ev in self.ep.poll():
                with self.lock:
                    entry = self.by_fd.get(fd)
                    if entry is None:
                        continue
                    self._forget(fd)
                try:
                    self.on_exit(entry[0])
                except Exception:
                    log.exception("handling the end of endpoint %s", entry[0])
