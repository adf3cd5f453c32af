"""Named network namespaces, the way `ip netns` keeps them, by system calls.

A namespace is made in a short-lived thread: the thread unshares its own
network namespace, which is then pinned by a bind mount on /run/netns/NAME
(so `ip netns` sees it) and configured from inside that thread. The rest of
the daemon never changes namespace. About a millisecond, against tens for
spawning `ip` (see bench/provision and its figures in the README).
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED, MNT_DETACH = 0x1000, 0x4000, 1 << 20, 2
NETNS_RUN_DIR = Path("/run/netns")
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(src: str, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, flags, None),
           f"mount {target}")


def umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def path_of(name: str) -> Path:
    return NETNS_RUN_DIR / name


def _shared_run_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so the pins
    are seen from every mount namespace (sshd's, systemd units' ...)."""
    NETNS_RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    try:
        mount("", str(NETNS_RUN_DIR), "none", MS_SHARED | MS_REC)
    except OSError as err:
        if err.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        mount(str(NETNS_RUN_DIR), str(NETNS_RUN_DIR), "none", MS_BIND | MS_REC)
        mount("", str(NETNS_RUN_DIR), "none", MS_SHARED | MS_REC)


def in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a fresh OS thread and return its result (or raise its error).
    Namespace changes made by fn die with the thread."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            box["error"] = err

    t = threading.Thread(target=body, name="netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def create(name: str, setup: Callable[[], T]) -> T:
    """Create namespace `name` and run setup() inside it; return its result.
    If setup fails, the namespace is removed again."""
    _shared_run_dir()
    target = path_of(name)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        if exists(name):
            raise
        # An empty pin file: a crash came between creating it and the bind
        # mount. Nothing is pinned there; take its place.
        target.unlink()
        fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def body() -> T:
        unshare(CLONE_NEWNET)
        mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(target), "none", MS_BIND)
        return setup()

    try:
        return in_thread(body)
    except BaseException:
        remove(name)
        raise


def enter(name: str, fn: Callable[[], T]) -> T:
    """Run fn inside the existing namespace `name`."""
    fd = os.open(path_of(name), os.O_RDONLY | os.O_CLOEXEC)

    def body() -> T:
        try:
            setns(fd)
        finally:
            os.close(fd)
        return fn()

    return in_thread(body)


def remove(name: str) -> None:
    """Unpin and delete /run/netns/name (the namespace dies with its last user)."""
    target = path_of(name)
    try:
        umount(str(target))
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        target.unlink()
    except FileNotFoundError:
        pass


def exists(name: str) -> bool:
    """Whether /run/netns/name is a pinned namespace (not just a file)."""
    # A pinned namespace file lives on nsfs: its device differs from the directory's.
    try:
        return os.stat(path_of(name)).st_dev != os.stat(NETNS_RUN_DIR).st_dev
    except OSError:
        return False


def inode(name: str) -> int:
    return os.stat(path_of(name)).st_ino


def open_fd(name: str) -> int:
    """A file descriptor of the namespace, for setns() (e.g. by the PAM module)."""
    return os.open(path_of(name), os.O_RDONLY | os.O_CLOEXEC)


def pin_fd(fd: int, name: str) -> None:
    """Pin the namespace of fd as /run/netns/name (again: its pin was removed)."""
    path = path_of(name)
    path.touch(0o444)
    mount(f"/proc/self/fd/{fd}", str(path), "none", MS_BIND)


def open_held(pid: int, ino: int) -> int | None:
    """A descriptor of the network namespace `ino` that process pid holds open,
    or None. Checked on the opened descriptor itself, so a pid reused meanwhile
    can hand us nothing else."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    nsfs = os.stat("/proc/self/ns/net").st_dev
    for n in names:
        path = f"/proc/{pid}/fd/{n}"
        try:  # (its link names the pin the endpoint opened, not net:[ino]: go by stat)
            st = os.stat(path)
            if (st.st_dev, st.st_ino) != (nsfs, ino):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (nsfs, ino):
            return fd
        os.close(fd)
    return None


def process_namespaces() -> Iterator[tuple[int, int]]:
    """(pid, inode of its network namespace) for every process we can see."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                yield int(entry.name), os.stat(f"/proc/{entry.name}/ns/net").st_ino
            except OSError:
                continue
