"""The daemon's descriptor limit: it holds a namespace fd and a pidfd per
endpoint, plus the control connections of logins in progress."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("vxvdexd")
WANTED = 524288       # vxvdex.service's LimitNOFILE: tens of thousands of users
FDS_PER_USER = 3      # namespace fd, endpoint pidfd, a little slack


def raise_nofile() -> int:
    """Raise the soft limit to the hard one (started by hand, the soft limit is
    often 1024: about 300 users). Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = WANTED if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < WANTED // 8:
        log.warning("descriptor limit %d: room for about %d users; raise it (LimitNOFILE=%d in "
                    "vxvdex.service, or `ulimit -Hn` before starting vxvdexd by hand)",
                    soft, soft // FDS_PER_USER, WANTED)
    return soft
