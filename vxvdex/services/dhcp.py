"""The DHCP client of every served tap of a user's namespace.

Which client: busybox's udhcpc (Debian package udhcpc), chosen by
measurement (bench/dhcp-clients, 10 namespaces at once, each with a vde0):

    client    PSS per instance     first address  many namespaces at once
    udhcpc    0.11-0.21 MB         150-220 ms     no files at all: ok
    dhclient  0.98 MB              340-680 ms     ok with -pf/-lf per instance
    dhcpcd    1.45 MB (6 procs,    9.5-11 s       1 of 10: /run/dhcpcd/pid and
              privilege sep.)                     the control socket collide

udhcpc keeps no pid file, lease file or control socket unless asked, so
namespaces that all call their tap vde0 cannot collide; one process per tap,
no privilege separation helpers; its lease hook is a shell script
(dhcp_hook.py) that applies the address and writes the status file.

Each client runs inside the namespace as the endpoint user with only
CAP_NET_ADMIN (the address and route), CAP_NET_RAW (the raw socket before
an address exists) and CAP_NET_BIND_SERVICE (port 68), no new privileges.
It is supervised like an endpoint (supervisor.py): restarted with backoff
when it dies, found again on the machine after a daemon restart by what it
is (the endpoint user's udhcpc on that tap in that namespace), stopped when
the namespace goes. The login never waits for it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from vxvdex.daemon import netns, supervisor
from vxvdex.daemon.provision import Port
from vxvdex.daemon.supervisor import Backoff, ProcInfo, Watcher
from vxvdex.services import dhcp_hook
from vxvdex.services.vlans import Vlan

log = logging.getLogger("vxvdexd")
WAITING = "waiting for DHCP from the gateway"
CAPS = "-all,+net_admin,+net_raw,+net_bind_service"
# 5 discovers 1 s apart, then 3 s of quiet, forever: a gateway that comes up
# later is found within ~8 s, and a VLAN without one sees 5 broadcasts per
# 8 s per namespace.
RETRY = ["-t", "5", "-T", "1", "-A", "3"]
Key = tuple[str, str]   # (namespace, ifname)


def client_argv() -> list[str]:
    """udhcpc as Debian installs it (package udhcpc), or through busybox."""
    found = shutil.which("udhcpc", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found:
        return [found]
    return [shutil.which("busybox", path="/usr/bin:/bin") or "busybox", "udhcpc"]


def dns_label(text: str) -> str:
    """text as one DNS label (what dnsmasq accepts as a client's name)."""
    return re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")[:63] or "user"


@dataclass
class Wanted:
    ns: str
    user: str
    port: Port
    vlan: Vlan


class DhcpClients:
    """The clients of all namespaces on this host."""

    def __init__(self, run_dir: Path, status_dir: Path, uid: int, gid: int, vlans: dict[int, Vlan],
                 host_name: str) -> None:
        self.status_dir, self.uid, self.gid = status_dir, uid, gid
        self.vlans, self.host_name = vlans, host_name
        self.hook = dhcp_hook.install(run_dir) if vlans else run_dir / "dhcp-hook"
        self.lock = threading.Lock()
        self.wanted: dict[Key, Wanted] = {}
        self.pids: dict[Key, int] = {}
        self.children: dict[int, subprocess.Popen[bytes]] = {}  # to reap (adopted ones are init's)
        self.restarts: dict[Key, int] = {}
        self.found: dict[tuple[int, str], list[tuple[int, ProcInfo]]] = {}
        self.watcher = Watcher(self._ended)
        self.backoff = Backoff()

    # ---- which taps ------------------------------------------------------------
    def served(self, ports: list[Port]) -> list[tuple[Port, Vlan]]:
        return [(p, self.vlans[p.gid]) for p in ports if p.gid in self.vlans]

    def status_path(self, ns: str, ifname: str) -> Path:
        return self.status_dir / f"{ns}-{ifname}.dhcp.json"

    # ---- start / keep / stop -----------------------------------------------------
    def ensure(self, ns: str, user: str, ports: list[Port], ns_inode: int) -> bool:
        """A running client on every served port of ns; True if one was started.
        Cheap when they all run (a repeat login)."""
        started = False
        for port, vlan in self.served(ports):
            key = (ns, port.ifname)
            with self.lock:
                self.wanted[key] = Wanted(ns, user, port, vlan)
                if self.watcher.running(key, self.pids.get(key)):
                    continue
                if self._adopt(key, ns_inode):
                    continue
                self._start(key)
                started = True
        return started

    def _start(self, key: Key) -> None:
        """Start key's client (the lock held)."""
        want = self.wanted[key]
        status = self.status_path(*key)
        self._fresh_status(status)
        mac = want.port.mac.hex()
        argv = ["nsenter", f"--net={netns.path_of(want.ns)}", "--",
                "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                f"--inh-caps={CAPS}", f"--ambient-caps={CAPS}", f"--bounding-set={CAPS}", "--no-new-privs",
                "--", *client_argv(), "-f", "-S", "-i", want.port.ifname, "-s", str(self.hook), *RETRY,
                "-x", f"0x3d:01{mac}", "-x", f"hostname:{dns_label(want.user)}-{dns_label(self.host_name)}"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "VXVDEX_DHCP_STATUS": str(status)}
        proc = subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        self.children[proc.pid] = proc
        self.pids[key] = proc.pid
        if not self.watcher.watch(key, proc.pid):
            self._ended(key, proc.pid)
        log.info("DHCP client %s/%s started (pid %d)", *key, proc.pid)

    def _fresh_status(self, path: Path) -> None:
        """A status file the client may replace: its directory is the endpoint
        user's; a leftover (of any kind) is removed first."""
        try:
            path.unlink(missing_ok=True)
        except OSError as err:  # e.g. a directory put in its place
            log.error("cannot clear %s: %s", path, err.strerror)

    def _ended(self, key: Hashable, pid: int) -> None:
        assert isinstance(key, tuple)
        child = self.children.pop(pid, None)
        if child is not None:
            child.wait()
        with self.lock:
            if key not in self.wanted or self.pids.get(key) != pid:
                return  # stopped on purpose, or already replaced
            del self.pids[key]
            self.restarts[key] = self.restarts.get(key, 0) + 1
        delay = self.backoff.delay(key)
        log.warning("DHCP client %s/%s (pid %d) ended; restarting in %.1f s", *key, pid, delay)
        time.sleep(delay)
        with self.lock:
            if key in self.wanted and key not in self.pids and netns.exists(key[0]):
                try:
                    self._start(key)
                except OSError as err:
                    log.error("could not restart the DHCP client %s/%s: %s", *key, err)

    def stop(self, ns: str) -> None:
        """End the clients of ns (the namespace is going) and forget their state."""
        with self.lock:
            keys = [k for k in self.wanted if k[0] == ns]
            for key in keys:
                del self.wanted[key]
                self.pids.pop(key, None)
                self.restarts.pop(key, None)
        for key in keys:
            for pidfd, pid in self.watcher.take(key):
                supervisor.terminate(pidfd)
                os.close(pidfd)
                child = self.children.pop(pid, None)
                if child is not None:
                    child.wait()
            self.status_path(*key).unlink(missing_ok=True)

    # ---- after a daemon restart ------------------------------------------------
    def scan(self) -> None:
        """Find the clients a previous run left, by namespace and tap."""
        for pidfd, info in supervisor.find(self.uid, self._is_client):
            ifname = _ifname(info.cmdline)
            self.found.setdefault((info.netns, ifname), []).append((pidfd, info))

    def _is_client(self, info: ProcInfo) -> bool:
        """One of our clients: udhcpc run with this daemon's hook."""
        mine = rf"(^|/| )udhcpc -f -S -i \S+ -s {re.escape(str(self.hook))} "
        return re.search(mine, info.cmdline) is not None

    def _adopt(self, key: Key, ns_inode: int) -> bool:
        """Take over a client found on the machine for key (the lock held)."""
        found = self.found.pop((ns_inode, key[1]), [])
        for extra_fd, info in found[1:]:  # two for one tap: a duplicate, ended
            log.warning("ending a duplicate DHCP client (pid %d) of %s/%s", info.pid, *key)
            supervisor.terminate(extra_fd)
            os.close(extra_fd)
        if not found:
            return False
        pidfd, info = found[0]
        self.pids[key] = info.pid
        self.watcher.watch(key, info.pid, pidfd)
        log.info("adopted DHCP client %s/%s (pid %d), found on the machine", *key, info.pid)
        return True

    def end_unclaimed(self) -> None:
        """Clients found for no namespace we keep (it went, or is no longer served)."""
        for found in self.found.values():
            for pidfd, info in found:
                log.warning("ending DHCP client pid %d: its namespace is not served any more", info.pid)
                supervisor.terminate(pidfd)
                os.close(pidfd)
        self.found.clear()

    # ---- status ------------------------------------------------------------------
    def status(self, ns: str, port: Port, read: Callable[[Path], dict]) -> dict | None:
        """What `status` shows of port's DHCP service; None if its VLAN is not served."""
        vlan = self.vlans.get(port.gid)
        if vlan is None:
            return None
        key = (ns, port.ifname)
        with self.lock:
            pid = self.pids.get(key)
            restarts = self.restarts.get(key, 0)
        view = lease_view(read(self.status_path(ns, port.ifname)), time.time())
        return {"gateway4": str(vlan.gateway4), "gateway6": str(vlan.gateway6), "domain": vlan.domain,
                "egress": vlan.egress, "subnet": str(vlan.subnet), "prefix6": str(vlan.prefix6),
                "client_pid": pid, "client_alive": self.watcher.running(key, pid),
                "client_restarts": restarts, **view}


def lease_view(raw: dict, now: float) -> dict:
    """The hook's status file as `status` shows it: only well-formed values,
    and "waiting" unless a lease is bound and not expired."""
    waiting = {"state": WAITING}
    if raw.get("state") != "bound":
        return waiting
    try:
        obtained, lease = int(raw["time"]), int(raw["lease"])
        address = f"{_text(raw, 'address')}/{int(raw['prefixlen'])}"
    except (KeyError, TypeError, ValueError):
        return waiting
    if obtained + lease < now:
        return waiting
    return {"state": "bound", "event": _text(raw, "event"), "address": address, "lease_time": lease,
            "obtained": obtained,
            "expires": obtained + lease, "server": _text(raw, "server"), "router": _text(raw, "router"),
            "dns": _text(raw, "dns").split(), "dns_domain": _text(raw, "domain")}


def _text(raw: dict, key: str) -> str:
    value = raw.get(key, "")
    return value[:255] if isinstance(value, str) else ""


def _ifname(cmdline: str) -> str:
    parts = cmdline.split()
    return parts[parts.index("-i") + 1] if "-i" in parts[:-1] else ""


def addresses(ns: str, ifname: str) -> list[str]:
    """The IPv6 addresses of ifname in ns (link-local and those from RAs)."""
    def read() -> list[str]:
        out = []
        with open("/proc/thread-self/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 6 and fields[5] == ifname:
                    raw = fields[0]
                    addr = ":".join(raw[i:i + 4] for i in range(0, 32, 4))
                    out.append(f"{ipaddress.IPv6Address(addr)}/{int(fields[2], 16)}")
        return out
    try:
        return netns.enter(ns, read)
    except OSError:
        return []
