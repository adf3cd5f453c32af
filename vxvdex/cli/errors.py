"""The edge of every vxvdex command: what this machine lacks becomes one line
saying what is wrong and what to do, and exit status 1, never a traceback.

Library code raises (OSError with a filename, or Unfit with a finished
sentence); only the commands' main functions go through run().
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

EXIT_ENVIRONMENT = 1  # documented in each command's --help and man page
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21

# What to do, by errno, when nothing closer to the cause said it.
HINTS = {
    errno.EACCES: "run it as root, or give this user access to it",
    errno.EPERM: "run it as root (with CAP_NET_ADMIN and CAP_SYS_ADMIN)",
    errno.ENOENT: "create it, or name one that exists",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENOSPC: "the file system is full: free some space (`df -h`, `df -i`)",
    errno.EDQUOT: "the disk quota is used up: free some space",
    errno.EROFS: "the file system is read-only: choose a writable place",
    errno.EADDRINUSE: "another program holds this address: find it with `ss -lupn` and stop it",
    errno.EADDRNOTAVAIL: "not an address of this host: see `ip address`",
    errno.ENETUNREACH: "no route: add one for multicast (`ip route add 224.0.0.0/4 dev eth0`)",
    errno.EMFILE: "too many open files: raise the limit (`ulimit -n`, LimitNOFILE=)",
    errno.ENFILE: "too many open files on this machine: raise fs.file-max",
    errno.ENOMEM: "out of memory",
    errno.ETIMEDOUT: "no answer in time: try again, or look at the daemon's log",
}


class Unfit(Exception):
    """The machine lacks something the command needs; str() says what and what to do."""


def describe(err: OSError, where: str | None = None) -> str:
    """One line: the file (or `where`), what went wrong, and what to do."""
    where = f"{where}: " if where else f"{err.filename}: " if err.filename else ""
    what = err.strerror or str(err) or type(err).__name__
    hint = HINTS.get(err.errno or 0)
    return f"{where}{what}" + (f" ({hint})" if hint else "")


def with_hint(message: str, code: int | None) -> str:
    """message, followed by what to do about code if message does not say it yet."""
    hint = HINTS.get(code or 0)
    return message if hint is None or "(" in message else f"{message} ({hint})"


def run(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """main(argv), with environment errors turned into one line and EXIT_ENVIRONMENT."""
    try:
        return main(argv)
    except Unfit as err:
        return fail(prog, str(err))
    except OSError as err:
        return fail(prog, describe(err))
    except KeyboardInterrupt:
        return 130


def fail(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_ENVIRONMENT


def effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def require_privilege(why: str) -> None:
    """Raise Unfit unless we are root with CAP_NET_ADMIN and CAP_SYS_ADMIN."""
    caps = effective_caps()
    if os.geteuid() != 0 or not (caps >> CAP_NET_ADMIN & caps >> CAP_SYS_ADMIN & 1):
        raise Unfit(f"must run as root with CAP_NET_ADMIN and CAP_SYS_ADMIN ({why}); "
                    "start it as root (`systemctl start vxvdex`), outside a capability-less container")


