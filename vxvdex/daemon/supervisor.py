"""Supervising the daemon's helper processes: endpoints now, the VLAN
services' dnsmasq and DHCP clients next (one mechanism for all of them).

- Identity: a process is held by a pidfd, which names one process for good
  (a reused pid cannot take its place); what /proc says about it is read
  while the pidfd is held and checked to be still alive afterwards, so the
  facts belong to the process the pidfd names (`find`, `examine`).
- Exit: the Watcher calls on_exit(key, pid) with the pid that ended, so a
  late notice about a process already replaced is recognised as such.
- Restart: Backoff spaces out the restarts of a crash-looping process.
- Progress: a process proves it works by touching its heartbeat file; one
  whose heartbeat is older than a limit, or that is stopped, is hung.
- Re-adoption: after a daemon restart the processes are found on the
  machine by what they are (`find`), not by what a state file says.

The endpoint zygote (the fork server) is supervised too: a dead one is
replaced by the next spawn.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

from vxvdex.dataplane.endpoint import Spec

log = logging.getLogger("vxvdexd")


class Zygote:
    """The fork server process (see zygote.py); replaced when it dies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-m", "vxvdex.daemon.zygote", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], close_fds=True)
        theirs.close()

    def _replace(self) -> None:
        log.warning("the endpoint zygote (pid %d) has exited; starting a new one", self.proc.pid)
        self.sock.close()
        self.proc.kill()  # if it only closed its socket
        self.proc.wait()
        self._start()

    def spawn(self, spec: Spec, fds: list[int]) -> int:
        """Fork an endpoint for spec with fds (tap, namespace); return its pid."""
        with self.lock:
            for _attempt in range(2):
                if self.proc.poll() is not None:
                    self._replace()
                try:
                    rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
                    self.sock.sendmsg([spec.dumps()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
                    answer = self.sock.recv(4096)
                except OSError:
                    answer = b""
                if answer:
                    pid: int = json.loads(answer)["pid"]
                    return pid
                self.proc.kill()  # broken: the next attempt replaces it
                self.proc.wait()
        raise OSError("the endpoint zygote could not be started; see the journal")

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Watcher:
    """Calls on_exit(key, pid) from its own thread when a watched process ends."""

    def __init__(self, on_exit: Callable[[Hashable, int], None]) -> None:
        self.on_exit = on_exit
        self.ep = select.epoll()
        self.by_fd: dict[int, tuple[Hashable, int]] = {}
        self.fd_of: dict[tuple[Hashable, int], int] = {}  # (key, pid) -> pidfd: running() is O(1)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self.thread.start()

    def watch(self, key: Hashable, pid: int, pidfd: int | None = None) -> bool:
        """Watch pid (through pidfd if given: taken over); False if it is already gone."""
        if pidfd is None:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return False
        with self.lock:
            self.by_fd[pidfd] = (key, pid)
            self.fd_of[(key, pid)] = pidfd
            self.ep.register(pidfd, select.EPOLLIN)
        return True

    def unwatch(self, key: Hashable) -> None:
        with self.lock:
            for fd, (k, _pid) in list(self.by_fd.items()):
                if k == key:
                    self._forget(fd)

    def take(self, key: Hashable) -> list[tuple[int, int]]:
        """Stop watching key; return its (pidfd, pid) pairs, now the caller's to close."""
        with self.lock:
            taken = [(fd, kp[1]) for fd, kp in self.by_fd.items() if kp[0] == key]
            for fd, pid in taken:
                self.ep.unregister(fd)
                del self.by_fd[fd]
                self.fd_of.pop((key, pid), None)
        return taken

    def running(self, key: Hashable, pid: int | None) -> bool:
        """Whether pid is watched under key and has not exited (its own process, never a reused pid)."""
        if pid is None:
            return False
        with self.lock:
            fd = self.fd_of.get((key, pid))
            return fd is not None and not select.select([fd], [], [], 0)[0]

    def _forget(self, fd: int) -> None:
        self.ep.unregister(fd)
        os.close(fd)
        if self.fd_of.get(self.by_fd[fd]) == fd:
            del self.fd_of[self.by_fd[fd]]
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
                    self.on_exit(*entry)
                except Exception:
                    log.exception("handling the end of process %s (pid %d)", *entry)


class Backoff:
    """Restart delays: the first few at once, then doubling up to a cap; a
    process that ran for `stable` seconds starts over."""

    def __init__(self, free: int = 3, first: float = 0.2, cap: float = 2.0, stable: float = 30.0) -> None:
        self.free, self.first, self.cap, self.stable = free, first, cap, stable
        self.count: dict[Hashable, int] = {}
        self.last: dict[Hashable, float] = {}

    def delay(self, key: Hashable) -> float:
        now = time.monotonic()
        if now - self.last.get(key, now) > self.stable:
            self.count[key] = 0
        n = self.count[key] = self.count.get(key, 0) + 1
        self.last[key] = now
        return 0.0 if n <= self.free else min(self.cap, self.first * 2 ** (n - self.free - 1))


# ---- what a process is ---------------------------------------------------------

@dataclass(frozen=True)
class ProcInfo:
    """What /proc says about one process (read under its pidfd)."""

    pid: int
    uids: tuple[int, ...]
    cmdline: str
    state: str
    netns: int                  # inode of the network namespace it runs in
    held_netns: frozenset[int]  # inodes of network namespaces it holds as open fds
    taps: tuple[str, ...]       # names of the taps it holds open


_NSFS_DEV = os.stat("/proc/self/ns/net").st_dev  # the file system of namespace descriptors


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(1 << 16).decode(errors="replace")


def _fds(pid: int) -> tuple[frozenset[int], tuple[str, ...]]:
    held, taps = set(), []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target == "/dev/net/tun":
                taps += [ln.split()[1] for ln in _read(f"/proc/{pid}/fdinfo/{fd}").splitlines()
                         if ln.startswith("iff:")]
            elif not target.startswith(("socket:", "pipe:", "anon_inode:", "/dev/")):
                st = os.stat(f"/proc/{pid}/fd/{fd}")  # a namespace opened by its pin shows the pin's path
                if st.st_dev == _NSFS_DEV:
                    held.add(st.st_ino)
        except (OSError, ValueError, IndexError):
            continue
    return frozenset(held), tuple(taps)


def _info(pid: int) -> ProcInfo:
    status = _read(f"/proc/{pid}/status")
    uids = next(tuple(int(u) for u in ln.split()[1:]) for ln in status.splitlines() if ln.startswith("Uid:"))
    state = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("State:"))
    held, taps = _fds(pid)
    return ProcInfo(pid, uids, _read(f"/proc/{pid}/cmdline").replace("\0", " "), state,
                    os.stat(f"/proc/{pid}/ns/net").st_ino, held, taps)


def pidfd_alive(pidfd: int) -> bool:
    return not select.select([pidfd], [], [], 0)[0]


def examine(pid: int) -> tuple[int, ProcInfo] | None:
    """A pidfd of pid and what it is, both of the same process; None if gone.
    The caller owns the pidfd."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        info = _info(pid)
    except (OSError, StopIteration, ValueError):
        info = None
    if info is None or not pidfd_alive(pidfd) or info.state in ("Z", "X"):
        os.close(pidfd)
        return None
    return pidfd, info


def find(uid: int, match: Callable[[ProcInfo], bool]) -> Iterator[tuple[int, ProcInfo]]:
    """Every live process running as uid (real, effective, saved) that match() accepts,
    with a pidfd the caller owns."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        found = examine(int(entry.name))
        if found is None:
            continue
        if all(u == uid for u in found[1].uids[:3]) and match(found[1]):
            yield found
        else:
            os.close(found[0])


def hung(pid: int) -> bool:
    """Stopped (SIGSTOP, a debugger) rather than running or sleeping."""
    try:
        state = _read(f"/proc/{pid}/stat").rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def heartbeat_age(path: os.PathLike[str] | str) -> float | None:
    """Seconds since the process last touched its heartbeat file; None if there
    is none (or it is not a regular file: the unprivileged side owns it)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_mtime == 0:
        return None
    return time.time() - st.st_mtime


def kill(pidfd: int, sig: int = signal.SIGKILL) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass


def terminate(pidfd: int, timeout: float = 2.0, sig: int = signal.SIGTERM) -> None:
    """sig, then SIGKILL if it has not ended within timeout; returns once it
    has ended (its descriptors, a tap among them, are closed by then)."""
    kill(pidfd, sig)
    if not select.select([pidfd], [], [], timeout)[0]:
        kill(pidfd, signal.SIGKILL)
        select.select([pidfd], [], [], 5.0)
