"""An endpoint process of the daemon: one user's tap onto one VLAN.

Started (forked by the zygote) as root with the tap already open. It opens
its sockets with egid = the user's gid, so that with AF_VXVDEX the kernel
pins them to that VLAN, then drops every privilege for good: supplementary
groups, gid and uid of the unprivileged endpoint user (never the login user,
who therefore can neither signal nor ptrace it) and no_new_privs. Only then
does it read a single frame.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vxvdex import __version__
from vxvdex.dataplane import url as urlmod
from vxvdex.dataplane.forwarder import Endpoint
from vxvdex.dataplane.tap import Tap, TapError
from vxvdex.dataplane.transport import open_transport

PR_SET_NO_NEW_PRIVS = 38
PR_SET_NAME = 15
log = logging.getLogger("vxvdex.endpoint")


@dataclass
class Spec:
    """Everything an endpoint needs, sent by the daemon as JSON."""

    user: str
    ifname: str
    url: str
    vlan_gid: int
    run_uid: int
    run_gid: int
    mtu: int
    status: str
    transport: str = "auto"
    mac: str = ""            # the tap's, aa:bb:..: noticed when it arrives from another host

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Spec:
        return cls(**json.loads(raw))


def set_name(name: str) -> None:
    """What ps and top show (else every endpoint looks like the zygote)."""
    ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def drop_privileges(uid: int, gid: int) -> None:
    """setgroups, setgid, setuid to the endpoint user, and no_new_privs."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if os.getuid() == 0 or os.geteuid() == 0 or os.getegid() != gid:
        raise PermissionError("privileges were not dropped")


def open_sockets(spec: Spec, url: urlmod.VxvdeUrl):  # type: ignore[no-untyped-def]
    """Sockets created while our egid is the user's gid: AF_VXVDEX keys on it."""
    os.setegid(spec.vlan_gid)
    try:
        return open_transport(url, spec.transport)
    finally:
        os.setegid(0)


def write_status(path: Path, status: dict) -> None:
    """Replace path atomically, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(status))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


class Tick:
    """Once a second: publish the status file when something moved (else every
    IDLE_REFRESH seconds: a hundred idle endpoints then cost next to nothing),
    touch it otherwise (the daemon's heartbeat), and rejoin the group if the
    uplink was made again. Nothing here may stop forwarding: a full run
    directory only costs the status (the heartbeat, a utime, needs no space)."""

    IDLE_REFRESH = 10.0

    def __init__(self, endpoint: Endpoint, path: Path, base: dict) -> None:
        self.endpoint, self.path, self.base = endpoint, path, base
        self.last: tuple = ()
        self.written = 0.0
        self.failing = False

    def __call__(self) -> None:
        self.publish()
        if self.endpoint.t.rejoin():
            log.warning("joined %s again (the uplink was made again)", self.endpoint.t.group[0])

    def publish(self) -> None:
        c = self.endpoint.c
        key = (c.rx_datagrams, c.tx_frames, c.leaves, c.tx_errors, self.endpoint.merger.errors)
        now = time.monotonic()
        try:
            if key != self.last or now - self.written >= self.IDLE_REFRESH:
                self.last, self.written = key, now
                write_status(self.path, {**self.base, **self.endpoint.status()})
            else:
                os.utime(self.path)
            self.failing = False
        except OSError as err:
            self.heartbeat_only(err)

    def heartbeat_only(self, err: OSError) -> None:
        if not self.failing:
            log.warning("cannot write the status file %s (%s): forwarding goes on", self.path, err.strerror)
        self.failing = True
        try:
            os.utime(self.path)
        except OSError:
            pass


def run(spec: Spec, tap_fd: int) -> int:
    """The endpoint's life; returns the exit status."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"vxvdex-endpoint[{os.getpid()}] {spec.user}/{spec.ifname}: %(message)s")
    set_name(f"vxep:{spec.user}")
    url = urlmod.parse(spec.url)
    transport = open_sockets(spec, url)
    drop_privileges(spec.run_uid, spec.run_gid)
    tap = Tap(spec.ifname, fd=tap_fd)
    endpoint = Endpoint(tap, transport, url.vni, url.hashsize, url.expiretime, max_frame=spec.mtu + 18,
                        own_mac=bytes.fromhex(spec.mac.replace(":", "")))
    status_path = Path(spec.status)
    # url, mtu and version let the daemon tell an endpoint that serves an
    # older configuration or code (vxvdex-session status: stale).
    base = {"user": spec.user, "ifname": spec.ifname, "vlan_gid": spec.vlan_gid, "pid": os.getpid(),
            "url": spec.url, "mtu": spec.mtu, "mac": spec.mac, "version": __version__}
    endpoint.on_tick = Tick(endpoint, status_path, base)
    endpoint.on_tick()
    signal.signal(signal.SIGTERM, lambda *_: endpoint.stop())
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    log.info("forwarding %s to %s via %s (pid %d, uid %d)", spec.ifname, url, transport.kind,
             os.getpid(), os.getuid())
    try:
        endpoint.run(rfd)
    except TapError as err:
        log.error("%s; exiting", err.args[-1])
        return 1
    finally:
        endpoint.leave()
    return 0
