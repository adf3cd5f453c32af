"""Users' namespaces: provisioned, repaired, re-adopted, collected.

One UserNs per provisioned user (or session, with scope: session). All
operations on one of them hold its lock, so concurrent opens for a user
create one namespace; every operation is idempotent (it checks what exists
and completes what is missing), which makes repair, reprovision and
re-adoption after a daemon restart the same code as the first open.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import netns, provision, wire
from .config import Config
from .endpoint import Spec
from .provision import Port
from .supervisor import Watcher, Zygote
from .users import User, extra_gids

log = logging.getLogger("vxvdexd")
RESTART_DELAY = 0.2     # a crash-looping endpoint is restarted at most 5 times a second
READY_TIMEOUT = 3.0


class SessionError(Exception):
    """An operation failed; code is an errno name for the control protocol."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class UserNs:
    user: User
    name: str
    ports: list[Port]
    sessions: set[str] = field(default_factory=set)
    pids: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    empty_since: float | None = None
    ns_fd: int | None = None      # held, so an unpinned namespace can be pinned again
    lock: threading.RLock = field(default_factory=threading.RLock)
    closing: bool = False


class Manager:
    """The daemon's state and every operation on it."""

    def __init__(self, cfg: Config, underlay_mtu: int) -> None:
        self.cfg = cfg
        self.run_dir: Path = cfg["run_dir"]
        self.status_dir: Path = self.run_dir / "endpoints"
        self.host_id = provision.host_id(self.run_dir)
        self.mtu = underlay_mtu - 50 if cfg["interface.mtu"] == "auto" else cfg["interface.mtu"]
        ep = pwd.getpwnam(cfg["endpoint_user"])
        self.ep_uid, self.ep_gid = ep.pw_uid, ep.pw_gid
        self.users: dict[str, UserNs] = {}
        self.lock = threading.Lock()
        self.save_lock = threading.Lock()  # one writer of state.json at a time
        self.dirty = False
        self.zygote = Zygote()
        self.watcher = Watcher(self._endpoint_ended)
        self._prepare_dirs()

    def _prepare_dirs(self) -> None:
        self.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.status_dir.mkdir(mode=0o755, exist_ok=True)
        os.chown(self.status_dir, self.ep_uid, self.ep_gid)

    # ---- the VLANs -------------------------------------------------------------
    def url_for(self, gid: int) -> str:
        v6 = self.cfg["network.ip_version"] == 6
        prefix = self.cfg["network.group_prefix"]
        group = wire.with_id_tail(prefix, gid) if prefix is not None else wire.group_address(gid, v6)
        url = f"vxvde://{group}/vni={gid}/port={self.cfg['network.port']}/ttl={self.cfg['network.ttl']}"
        return url + (f"/if={self.cfg['network.uplink']}" if self.cfg["network.uplink"] else "")

    def ports_for(self, user: User) -> list[Port]:
        base = self.cfg["interface.name"]
        gids = [user.gid, *extra_gids(user, self.cfg)]
        names = [base] + [f"{base.rstrip('0123456789')}{i}" for i in range(1, len(gids))]
        return [Port(n, wire.check_id(g), provision.stable_mac(self.host_id, user.name, g, n), self.mtu)
                for n, g in zip(names, gids, strict=True)]

    # ---- open / close ----------------------------------------------------------
    def _entry(self, user: User, session: str) -> UserNs:
        name = self.cfg.netns_name(user.name, session if self.cfg["scope"] == "session" else "")
        with self.lock:
            entry = self.users.get(name)
            if entry is None:
                entry = self.users[name] = UserNs(user, name, self.ports_for(user))
            return entry

    def open(self, user: User, session: str) -> tuple[str, int]:
        """Provision (if needed) and return the namespace's name and an fd of it."""
        while True:
            entry = self._entry(user, session)
            with entry.lock:
                if entry.closing:
                    continue  # torn down while we waited: never resurrect it, take a new entry
                changed = self.ensure(entry)
                entry.sessions.add(session or "-")
                entry.empty_since = None
                # Namespaces and endpoints are saved at once; session lists only
                # inform, so the collector saves them (keeps repeat logins cheap).
                if changed:
                    self.save()
                else:
                    self.dirty = True
                return entry.name, netns.open_fd(entry.name)

    def close(self, user: User, session: str) -> None:
        entry = self.find(user.name, session)
        with entry.lock:
            entry.sessions.discard(session or "-")
            self.dirty = True
        log.info("session %s of %s closed, %d left", session or "-", user.name, len(entry.sessions))

    def find(self, user_name: str, session: str = "") -> UserNs:
        scope_session = session if self.cfg["scope"] == "session" else ""
        name = self.cfg.netns_name(user_name, scope_session)
        with self.lock:
            entry = self.users.get(name)
        if entry is None:
            raise SessionError("ENOENT", f"{user_name} has no namespace on this host (log in first)")
        return entry

    # ---- provisioning ----------------------------------------------------------
    def ensure(self, entry: UserNs) -> bool:
        """Make everything of entry exist and run; idempotent. True if it changed anything."""
        t0 = time.monotonic()
        if not netns.exists(entry.name) and entry.ns_fd is not None:
            log.warning("%s was unpinned by hand: pinning it again", entry.name)
            self._repin(entry)
        created = not netns.exists(entry.name)
        if created:
            self._stop_endpoints(entry)  # if any, they served a namespace that is gone
        missing = [p for p in entry.ports if not _alive(entry.pids.get(p.ifname))]
        if not missing:
            return False  # the common repeat open: nothing to do
        ping = provision.ping_group_range()  # read here, in the host's namespace
        if created:
            fds = netns.create(entry.name, lambda: provision.ensure_namespace(missing, ping))
            self._hold(entry)
        else:
            fds = netns.enter(entry.name, lambda: provision.ensure_namespace(missing, ping))
        try:
            for port, fd in zip(missing, fds, strict=True):
                self.start_endpoint(entry, port, fd)
        finally:
            for fd in fds:
                os.close(fd)
        if created:
            log.info("provisioned %s for %s (gid %d) in %.1f ms", entry.name, entry.user.name,
                     entry.user.gid, (time.monotonic() - t0) * 1000)
        return True

    def status_path(self, entry: UserNs, port: Port) -> Path:
        return self.status_dir / f"{entry.name}-{port.ifname}.json"

    def start_endpoint(self, entry: UserNs, port: Port, tap_fd: int) -> None:
        status = self.status_path(entry, port)
        status.unlink(missing_ok=True)
        spec = Spec(user=entry.user.name, ifname=port.ifname, url=self.url_for(port.gid), vlan_gid=port.gid,
                    run_uid=self.ep_uid, run_gid=self.ep_gid, mtu=port.mtu, status=str(status))
        pid = self.zygote.spawn(spec, tap_fd)
        entry.pids[port.ifname] = pid
        self.watcher.watch((entry.name, port.ifname), pid)
        _wait_for_file(status, READY_TIMEOUT, pid)

    def _endpoint_ended(self, key: object) -> None:
        assert isinstance(key, tuple)
        name: str = key[0]
        ifname: str = key[1]
        with self.lock:
            entry = self.users.get(name)
        if entry is None:
            return
        with entry.lock:
            if entry.closing or entry.pids.get(ifname) is None:
                return
            entry.restarts[ifname] = entry.restarts.get(ifname, 0) + 1
            log.warning("endpoint %s/%s (pid %d) ended; restarting", name, ifname, entry.pids[ifname])
            del entry.pids[ifname]
            time.sleep(RESTART_DELAY if entry.restarts[ifname] > 3 else 0)
            try:
                self.repair(entry)
            except OSError as err:
                log.error("could not restart endpoint %s/%s: %s", name, ifname, err)

    def repair(self, entry: UserNs) -> None:
        """Re-pin a namespace that was unmounted by hand, then ensure the rest."""
        self.ensure(entry)
        self.save()

    def reprovision(self, user_name: str) -> UserNs:
        entry = self.find(user_name)
        with entry.lock:
            if entry.closing:
                raise SessionError("ENOENT", f"{user_name}'s namespace has just been removed")
            self.repair(entry)
        return entry

    def _hold(self, entry: UserNs) -> None:
        if entry.ns_fd is not None:
            os.close(entry.ns_fd)
        entry.ns_fd = netns.open_fd(entry.name)

    def _repin(self, entry: UserNs) -> None:
        path = netns.path_of(entry.name)
        path.touch(0o444)
        netns.mount(f"/proc/self/fd/{entry.ns_fd}", str(path), "none", netns.MS_BIND)

    def _stop_endpoints(self, entry: UserNs) -> None:
        for ifname, pid in list(entry.pids.items()):
            self.watcher.unwatch((entry.name, ifname))
            _terminate(pid)
        entry.pids.clear()

    # ---- up / down / teardown --------------------------------------------------
    def set_up(self, user_name: str, up: bool) -> None:
        entry = self.find(user_name)
        with entry.lock:
            netns.enter(entry.name, lambda: provision.set_ports_up(entry.ports, up))

    def teardown(self, entry: UserNs) -> None:
        """Stop the endpoints and unpin the namespace (it dies with its last process)."""
        with entry.lock:
            entry.closing = True
            self._stop_endpoints(entry)
            if entry.ns_fd is not None:
                os.close(entry.ns_fd)
                entry.ns_fd = None
            for port in entry.ports:
                self.status_path(entry, port).unlink(missing_ok=True)
            netns.remove(entry.name)
            with self.lock:
                self.users.pop(entry.name, None)
            self.save()
        log.info("removed %s of %s", entry.name, entry.user.name)

    def collect(self, now: float) -> None:
        """Periodic: repair unpinned namespaces; remove unused ones per policy."""
        if self.dirty:
            self.save()
        by_inode = _namespace_users()
        with self.lock:
            entries = list(self.users.values())
        for entry in entries:
            if entry.closing:
                continue
            try:
                in_use = netns.exists(entry.name) and by_inode.get(netns.inode(entry.name), 0) > 0
            except OSError:
                in_use = False
            if in_use or self.cfg["after_logout"] == "keep":
                entry.empty_since = None
                continue
            entry.empty_since = entry.empty_since or now
            if now - entry.empty_since >= self.cfg["remove_after"]:
                self.teardown(entry)

    # ---- state on disk (for re-adoption) ---------------------------------------
    def save(self) -> None:
        self.dirty = False
        # Serialised: concurrent saves shared the temporary file (one replace()
        # then failed with ENOENT and an older snapshot could win).
        with self.save_lock:
            with self.lock:
                state = {e.name: {"user": e.user.name, "sessions": sorted(e.sessions), "pids": dict(e.pids)}
                         for e in self.users.values()}
            tmp = self.run_dir / ".state.json.tmp"
            tmp.write_text(json.dumps(state))
            tmp.replace(self.run_dir / "state.json")

    def adopt(self, lookup: object) -> None:
        """After a restart: take over the namespaces and endpoints of the last run."""
        try:
            state = json.loads((self.run_dir / "state.json").read_text())
        except (OSError, ValueError):
            return
        for name, saved in state.items():
            try:
                self._adopt_one(name, saved, lookup)
            except (OSError, KeyError, ValueError, TypeError, SessionError) as err:
                # One broken user must not keep every other one offline.
                log.error("could not re-adopt %s: %s; `vxvdex-session reprovision` after "
                          "the next login will rebuild it", name, err)
        self.save()

    def _adopt_one(self, name: str, saved: dict, lookup: object) -> None:
        try:
            user = lookup(saved["user"])  # type: ignore[operator]
        except KeyError:
            return
        if not netns.exists(name):
            return
        entry = UserNs(user, name, self.ports_for(user), sessions=set(saved["sessions"]))
        for ifname, pid in saved["pids"].items():
            if _is_endpoint(pid, self.ep_uid) and self.watcher.watch((name, ifname), pid):
                entry.pids[ifname] = pid
        entry.ns_fd = netns.open_fd(name)
        with self.lock:
            self.users[name] = entry
        with entry.lock:
            self.ensure(entry)
        log.info("re-adopted %s of %s (endpoints %s)", name, user.name, sorted(entry.pids.values()))

    # ---- reading ---------------------------------------------------------------
    def status(self, entry: UserNs) -> dict:
        ports = []
        for port in entry.ports:
            try:
                ep = json.loads(self.status_path(entry, port).read_text())
            except (OSError, ValueError):
                ep = {}
            pid = entry.pids.get(port.ifname)
            ports.append({"ifname": port.ifname, "vlan_gid": port.gid, "mac": port.mac.hex(":"),
                          "mtu": port.mtu, "url": self.url_for(port.gid), "endpoint_pid": pid,
                          "endpoint_alive": pid is not None and _alive(pid),
                          "restarts": entry.restarts.get(port.ifname, 0), "endpoint": ep})
        return {"user": entry.user.name, "uid": entry.user.uid, "gid": entry.user.gid,
                "netns": entry.name, "pinned": netns.exists(entry.name),
                "sessions": sorted(entry.sessions), "ports": ports}

    def all_status(self) -> list[dict]:
        with self.lock:
            entries = list(self.users.values())
        return [self.status(e) for e in entries]

    def shutdown(self) -> None:
        """Daemon exit: endpoints keep running; they are re-adopted at start."""
        self.save()
        self.zygote.close()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_endpoint(pid: int, uid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    return all(int(u) == uid for u in uids)


def _terminate(pid: int, timeout: float = 2.0) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        import select
        if not select.select([fd], [], [], timeout)[0]:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def _wait_for_file(path: Path, timeout: float, pid: int) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or not _alive(pid):
            raise SessionError("EIO", f"endpoint (pid {pid}) did not come up; see the journal")
        time.sleep(0.001)


def _namespace_users() -> dict[int, int]:
    """How many processes each network namespace (by inode) has."""
    return Counter(ino for _pid, ino in netns.process_namespaces())
