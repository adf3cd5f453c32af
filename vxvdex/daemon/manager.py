"""Users' namespaces: provisioned, repaired, re-adopted, collected.

One UserNs per provisioned user (or session, with scope: session). All
operations on one of them hold its lock, so concurrent opens for a user
create one namespace; every operation is idempotent (it checks what exists
and completes what is missing), which makes repair, reprovision and
re-adoption after a daemon restart the same code as the first open.

What is on the machine wins over what the daemon recorded: endpoints are
found by what they are (the endpoint user's zygote children, holding the
namespace they serve) and adopted or ended, pins left empty by a crash are
removed, and state.json only adds what cannot be seen (sessions, users
that cannot be looked up now). See supervisor.py for the mechanism.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import signal
import stat
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from vxvdex import __version__
from vxvdex.config import Config
from vxvdex.daemon import netns, provision, supervisor
from vxvdex.daemon.provision import Port
from vxvdex.daemon.supervisor import Backoff, ProcInfo, Watcher, Zygote
from vxvdex.daemon.users import User, extra_gids
from vxvdex.dataplane import wire
from vxvdex.dataplane.endpoint import Spec
from vxvdex.services import dhcp, names, resolv, vlans

log = logging.getLogger("vxvdexd")
READY_TIMEOUT = 3.0
# An endpoint touches its status file every second; silent this long: hung. More
# than an older endpoint's idle refresh (10 s), so an upgrade replaces none.
HUNG_AFTER = 15.0
MAX_STATUS_BYTES = 256 << 10   # status files are the endpoint user's: read at most this much
MAX_PEERS = 64          # learned peers shown by `status USER` (their total is always shown)
Found = tuple[int, ProcInfo]   # a pidfd and what the process is


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
    started: dict[str, float] = field(default_factory=dict)  # monotonic, for the heartbeat's grace
    empty_since: float | None = None
    ns_fd: int | None = None      # held, so an unpinned namespace can be pinned again
    lock: threading.RLock = field(default_factory=threading.RLock)
    closing: bool = False
    openers: dict[str, int] = field(default_factory=dict)   # session -> pid of the PAM process
    # Created for a session whose open has not finished: counted at max_sessions
    # already, or logins that arrive together would all pass the cap.
    reserved: bool = False

    @property
    def ns_inode(self) -> int | None:
        """The namespace's inode (saved: finds it in its endpoints if its pin is lost)."""
        return os.fstat(self.ns_fd).st_ino if self.ns_fd is not None else None


class Manager:
    """The daemon's state and every operation on it."""

    def __init__(self, cfg: Config, underlay_mtu: int, host_name: str | None = None) -> None:
        self.cfg = cfg
        self.run_dir: Path = cfg["run_dir"]
        self.status_dir: Path = self.run_dir / "endpoints"
        # vxvdexd --host-name (simulated hosts share one UTS name)
        self.host_name = host_name or vlans.this_host()
        self.host_id = provision.host_id(self.run_dir, self.host_name,
                                         cfg["network.uplink"] or provision.default_uplink())
        self.mtu = cfg.tap_mtu(underlay_mtu)
        ep = pwd.getpwnam(cfg["endpoint_user"])
        self.ep_uid, self.ep_gid = ep.pw_uid, ep.pw_gid
        self.users: dict[str, UserNs] = {}
        self.others: dict[str, UserNs] = {}  # namespaces of the VLAN services (gateways)
        self.not_users = names.gateway_pattern(cfg)
        self.lock = threading.Lock()
        self.save_lock = threading.Lock()  # one writer of state.json at a time
        self.dirty = False
        self.zygote = Zygote()
        self.watcher = Watcher(self._endpoint_ended)
        self.backoff = Backoff()
        self.host_netns = os.stat("/proc/self/ns/net").st_ino
        self.name_re = _name_pattern(cfg)
        self.unresolved: dict[str, dict] = {}  # saved entries whose user cannot be looked up now
        self.lookup: Callable[[str], User] | None = None
        self.save_wanted = threading.Event()
        threading.Thread(target=self._saver, name="saver", daemon=True).start()
        self._prepare_dirs()
        self.dhcp = dhcp.DhcpClients(self.run_dir, self.status_dir, self.ep_uid, self.ep_gid,
                                     vlans.resolve(cfg), self.host_name)

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

    def ports_for(self, user: User, ns_name: str = "") -> list[Port]:
        base = self.cfg["interface.name"]
        gids = [user.gid, *extra_gids(user, self.cfg)]
        names = [base] + [f"{base.rstrip('0123456789')}{i}" for i in range(1, len(gids))]
        # scope: session: a user's sessions are on her VLAN at once, each needs its own MAC.
        who = user.name if self.cfg["scope"] == "user" else f"{user.name}/{ns_name}"
        return [Port(n, wire.check_id(g), provision.stable_mac(self.host_id, who, g, n), self.mtu)
                for n, g in zip(names, gids, strict=True)]

    # ---- open / close ----------------------------------------------------------
    def _entry(self, user: User, session: str, may_start: bool) -> UserNs:
        """The entry of (user, session), created if may_start; never another uid's."""
        name = self.cfg.netns_name(user.name, self._scoped(session))
        with self.lock:
            entry = self.users.get(name)
            if entry is not None and entry.user.uid != user.uid:
                log.error("%s belongs to uid %d, not to %s (uid %d): refused", name, entry.user.uid,
                          user.name, user.uid)
                raise SessionError("EPERM", f"namespace {name} is not {user.name}'s")
            if entry is None:
                if not may_start:
                    raise SessionError("EPERM", f"{user.name} has no session {session or '-'}; only "
                                       "root (pam_vxvdex) starts sessions")
                if self._scoped(session):  # one session per entry: count them before adding one
                    self._check_cap(user, [e for e in self.users.values() if e.user.uid == user.uid])
                entry = self.users[name] = UserNs(user, name, self.ports_for(user, name),
                                                  reserved=bool(self._scoped(session)))
            return entry

    def _scoped(self, session: str) -> str:
        return session if self.cfg["scope"] == "session" else ""

    def _check_cap(self, user: User, entries: list[UserNs]) -> None:
        """Refuse a new session at max_sessions, after forgetting those whose
        opener has ended (a PAM process killed before its close)."""
        for entry in entries:
            for session, pid in list(entry.openers.items()):
                if not _alive(pid):
                    entry.sessions.discard(session)
                    del entry.openers[session]
        if sum(len(e.sessions) or e.reserved for e in entries) >= self.cfg["max_sessions"]:
            log.warning("%s has %d sessions (max_sessions): login refused", user.name,
                        self.cfg["max_sessions"])
            raise SessionError("EUSERS", f"{user.name} has {self.cfg['max_sessions']} sessions open already "
                               "(max_sessions)")

    def open(self, user: User, session: str, opener: int = 0, by_root: bool = True) -> tuple[str, int]:
        """Provision (if needed) and return the namespace's name and an fd of it.
        Only root starts sessions (pam_vxvdex runs as root); a user may rejoin
        one of their own, or (scope: user) the namespace without a session."""
        if self.cfg["scope"] == "session" and not session:
            raise SessionError("EINVAL", "scope: session: name the session")
        while True:
            entry = self._entry(user, session, may_start=by_root)
            with entry.lock:
                if entry.closing:
                    continue  # torn down while we waited: never resurrect it, take a new entry
                new = bool(session) and session not in entry.sessions
                if new and not by_root:
                    raise SessionError("EPERM", f"{user.name} has no session {session}; only root "
                                       "(pam_vxvdex) starts sessions")
                if new and not self._scoped(session):
                    self._check_cap(user, [entry])
                try:
                    changed = self.ensure(entry)
                finally:
                    entry.reserved = False
                if new or (by_root and not session):
                    entry.sessions.add(session or "-")
                    if opener:
                        entry.openers[session or "-"] = opener
                entry.empty_since = None
                # Namespaces and endpoints are saved at once; session lists only
                # inform, so the collector saves them (keeps repeat logins cheap).
                if changed:
                    self.save_soon()
                else:
                    self.dirty = True
                return entry.name, netns.open_fd(entry.name)

    def close(self, user: User, session: str) -> None:
        entry = self.find(user, session)
        with entry.lock:
            entry.sessions.discard(session or "-")
            entry.openers.pop(session or "-", None)
            self.dirty = True
        log.info("session %s of %s closed, %d left", session or "-", user.name, len(entry.sessions))
        if self._scoped(session) and self.cfg["after_logout"] == "keep":
            self._keep_until_last(user)

    def _keep_until_last(self, user: User) -> None:
        """scope: session, after_logout: keep: the namespaces of ended sessions
        stay while the user has a session open, and go with the last one."""
        entries = self.find_all(user)
        if not any(e.sessions for e in entries):
            for entry in entries:
                self.teardown(entry)

    def find(self, user: User, session: str = "") -> UserNs:
        """The entry of (user, session) (of the user alone with scope: user)."""
        name = self.cfg.netns_name(user.name, self._scoped(session))
        with self.lock:
            entry = self.users.get(name)
        if entry is None or entry.user.uid != user.uid:
            what = f"session {session}" if self._scoped(session) else "namespace"
            raise SessionError("ENOENT", f"{user.name} has no {what} on this host (log in first)")
        return entry

    def find_all(self, user: User) -> list[UserNs]:
        """Every entry of the user (one with scope: user)."""
        with self.lock:
            return [e for e in self.users.values() if e.user.uid == user.uid and not e.closing]

    # ---- provisioning ----------------------------------------------------------
    def ensure(self, entry: UserNs) -> bool:
        """Make everything of entry exist and run; idempotent. True if it changed anything."""
        changed = self._ensure_endpoints(entry)
        self._ensure_services(entry)
        return changed

    def _ensure_services(self, entry: UserNs) -> None:
        """The DHCP clients of served VLANs (started, never waited for) and the
        namespace's resolv.conf; nothing at all for unserved VLANs."""
        if self.not_users.fullmatch(entry.name):
            return  # a gateway: it is the DHCP server, not a client
        served = self.dhcp.served(entry.ports)
        if not served or entry.ns_fd is None:
            return
        try:
            if self.dhcp.ensure(entry.name, entry.user.name, entry.ports, os.fstat(entry.ns_fd).st_ino):
                resolv.write(entry.name, [vlan for _port, vlan in served])
        except OSError as err:
            log.error("could not start the DHCP service of %s: %s (the collector retries)", entry.name, err)

    def _ensure_endpoints(self, entry: UserNs) -> bool:
        t0 = time.monotonic()
        if not netns.exists(entry.name) and entry.ns_fd is not None:
            log.warning("%s was unpinned by hand: pinning it again", entry.name)
            self._repin(entry)
        created = not netns.exists(entry.name)
        if created:
            self._stop_endpoints(entry)  # if any, they served a namespace that is gone
        elif entry.ns_fd is None:
            self._hold(entry)
        missing = self._missing(entry)
        if not missing:
            return False  # the common repeat open: nothing to do
        if not created:
            # An endpoint we lost track of may still serve it (and hold the tap).
            self._adopt_found(entry, self._found(netns.inode(entry.name)))
            missing = self._missing(entry)
            if not missing:
                return True
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

    def _missing(self, entry: UserNs) -> list[Port]:
        """The ports without a working endpoint; a dead or hung one is forgotten
        (and a hung one ended) here, so that the caller starts a new one."""
        missing = []
        for port in entry.ports:
            pid = entry.pids.get(port.ifname)
            if pid is None:
                missing.append(port)
                continue
            key = (entry.name, port.ifname)
            if not self.watcher.running(key, pid):
                log.warning("endpoint %s/%s (pid %d) ended; starting another", entry.name, port.ifname, pid)
            elif self._hung(entry, port, pid):
                log.warning("endpoint %s/%s (pid %d) is hung (stopped, or no heartbeat for %.0f s); "
                            "replacing it", entry.name, port.ifname, pid, HUNG_AFTER)
                self._end(entry, port.ifname)
            else:
                continue
            entry.pids.pop(port.ifname, None)
            entry.restarts[port.ifname] = entry.restarts.get(port.ifname, 0) + 1
            missing.append(port)
        return missing

    def _hung(self, entry: UserNs, port: Port, pid: int) -> bool:
        if supervisor.hung(pid):
            return True
        if time.monotonic() - entry.started.get(port.ifname, 0.0) < HUNG_AFTER:
            return False  # just started or adopted: give it time to beat
        age = supervisor.heartbeat_age(self.status_path(entry, port))
        return age is None or age > HUNG_AFTER

    def status_path(self, entry: UserNs, port: Port) -> Path:
        return self.status_dir / f"{entry.name}-{port.ifname}.json"

    def start_endpoint(self, entry: UserNs, port: Port, tap_fd: int) -> None:
        status = self.status_path(entry, port)
        self._fresh_status(status)
        spec = Spec(user=entry.user.name, ifname=port.ifname, url=self.url_for(port.gid), vlan_gid=port.gid,
                    run_uid=self.ep_uid, run_gid=self.ep_gid, mtu=port.mtu, status=str(status),
                    mac=port.mac.hex(":"))
        assert entry.ns_fd is not None
        pid = self.zygote.spawn(spec, [tap_fd, entry.ns_fd])
        entry.pids[port.ifname] = pid
        entry.started[port.ifname] = time.monotonic()
        self.watcher.watch((entry.name, port.ifname), pid)
        _wait_until_ready(status, READY_TIMEOUT, pid)

    def _fresh_status(self, path: Path) -> None:
        """An empty status file of the endpoint user, dated 1970: it needs no
        space, so the endpoint can beat (touch it) even on a full run directory;
        a date after 1970 says it is forwarding."""
        path.unlink(missing_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as err:
            log.error("cannot create %s: %s", path, err.strerror)
            return
        try:
            os.fchown(fd, self.ep_uid, self.ep_gid)
            os.utime(fd, (0, 0))
        finally:
            os.close(fd)

    def _endpoint_ended(self, key: Hashable, pid: int) -> None:
        assert isinstance(key, tuple)
        name: str = key[0]
        ifname: str = key[1]
        with self.lock:
            entry = self.users.get(name) or self.others.get(name)
        if entry is None:
            return
        with entry.lock:
            if entry.closing or entry.pids.get(ifname) != pid:
                return  # torn down, or already replaced (by an open that came first)
            entry.restarts[ifname] = entry.restarts.get(ifname, 0) + 1
            log.warning("endpoint %s/%s (pid %d) ended; restarting", name, ifname, pid)
            del entry.pids[ifname]
            time.sleep(self.backoff.delay(key))
            try:
                self.repair(entry)
            except (OSError, SessionError) as err:
                log.error("could not restart endpoint %s/%s: %s", name, ifname, err)

    def repair(self, entry: UserNs) -> None:
        """Make it work (reprovision): re-pin a namespace that was unmounted by
        hand, then ensure the rest; what is missing, dead or hung is made again."""
        self.ensure(entry)
        self.save()

    def reprovision(self, entry: UserNs, fresh: User | None = None) -> UserNs:
        """Make it work: what is missing, dead, hung or stale (fresh: the user
        as the directory says now, whose gid may have changed) is made again."""
        with entry.lock:
            if entry.closing:
                raise SessionError("ENOENT", f"{entry.name} has just been removed")
            if fresh is not None:
                self._apply_changes(entry, fresh)
            self.repair(entry)
        return entry

    def _apply_changes(self, entry: UserNs, fresh: User) -> None:
        """A changed primary gid or configuration: the ports follow the user
        as they are now, and endpoints that serve something else restart."""
        entry.user = fresh
        entry.ports = self.ports_for(fresh, entry.name)
        for port in entry.ports:
            reason = self.stale(entry, port)
            pid = entry.pids.get(port.ifname)
            if reason and pid is not None:
                log.info("restarting endpoint %s/%s (pid %d): %s", entry.name, port.ifname, pid, reason)
                self._end(entry, port.ifname)
                del entry.pids[port.ifname]

    def stale(self, entry: UserNs, port: Port) -> str | None:
        """Why port's running endpoint is not what the configuration asks for, or None."""
        ep = _read_status(self.status_path(entry, port))
        if not ep:
            return None  # not running (or starting): nothing stale to restart
        want = {"vlan_gid": port.gid, "url": self.url_for(port.gid), "mtu": port.mtu,
                "mac": port.mac.hex(":"), "version": __version__}
        wrong = [f"{key} {ep.get(key)!r} (now {value!r})" for key, value in want.items()
                 if ep.get(key) != value]
        return ", ".join(wrong) or None

    def remove(self, user: User, force: bool) -> int:
        """End every namespace of user and its endpoints now; return how many
        processes were still in them (refused with EBUSY unless force)."""
        entries = self.find_all(user)
        if not entries:
            raise SessionError("ENOENT", f"{user.name} has no namespace on this host")
        inodes = {os.fstat(e.ns_fd).st_ino for e in entries if e.ns_fd is not None}
        inside = sum(1 for _pid, ino in netns.process_namespaces() if ino in inodes)
        if inside and not force:
            raise SessionError("EBUSY", f"{user.name} has {inside} processes in "
                               f"{', '.join(e.name for e in entries)}: they lose the VLAN; "
                               "log them out first or add --force")
        for entry in entries:
            self.teardown(entry)
        return inside

    def _hold(self, entry: UserNs) -> None:
        if entry.ns_fd is not None:
            os.close(entry.ns_fd)
        entry.ns_fd = netns.open_fd(entry.name)

    def _repin(self, entry: UserNs) -> None:
        assert entry.ns_fd is not None
        netns.pin_fd(entry.ns_fd, entry.name)

    def _repin_lost(self, state: dict[str, dict], found: dict[int, list[Found]]) -> None:
        """A namespace whose pin went while we were down (`ip netns delete`)
        lives on in its endpoints, which hold it: pin it again under its name
        from one of them, so it is adopted instead of left to an orphan that
        forwards the user's MAC next to her next namespace's endpoint."""
        for name, saved in state.items():
            ino = saved.get("netns_inode")
            if not isinstance(ino, int) or ino not in found or netns.exists(name):
                continue
            for _pidfd, info in found[ino]:
                fd = netns.open_held(info.pid, ino)
                if fd is None:
                    continue
                try:
                    netns.pin_fd(fd, name)
                finally:
                    os.close(fd)
                log.warning("%s was unpinned while vxvdexd was down: pinned again from its endpoint "
                            "(pid %d)", name, info.pid)
                break

    def _end(self, entry: UserNs, ifname: str) -> None:
        """End entry's endpoint on ifname (by pidfd) and wait until it has."""
        for pidfd, _pid in self.watcher.take((entry.name, ifname)):
            supervisor.terminate(pidfd, sig=signal.SIGKILL)
            os.close(pidfd)

    def _stop_endpoints(self, entry: UserNs) -> None:
        for ifname in list(entry.pids):
            for pidfd, _pid in self.watcher.take((entry.name, ifname)):
                supervisor.terminate(pidfd)
                os.close(pidfd)
        entry.pids.clear()

    # ---- what is on the machine --------------------------------------------------
    def _is_endpoint(self, info: ProcInfo) -> bool:
        """One of our endpoints: forked by a zygote of ours (its command line), in our network namespace."""
        return info.netns == self.host_netns and "-m vxvdex.daemon.zygote " in info.cmdline

    def _found(self, ns_inode: int | None = None) -> dict[int, list[Found]]:
        """Endpoints on the machine by the namespace they serve (that of ns_inode only, if given)."""
        found: dict[int, list[Found]] = {}
        for pidfd, info in supervisor.find(self.ep_uid, self._is_endpoint):
            for ino in info.held_netns if ns_inode is None else info.held_netns & {ns_inode}:
                found.setdefault(ino, []).append((os.dup(pidfd), info))
            os.close(pidfd)
        return found

    def _adopt_found(self, entry: UserNs, found: dict[int, list[Found]]) -> None:
        """Take over the endpoints found serving entry's namespace: one per
        port, the others (strays that would hold a tap) are ended."""
        assert entry.ns_fd is not None
        for pidfd, info in found.pop(os.fstat(entry.ns_fd).st_ino, []):
            ifname = info.taps[0] if len(info.taps) == 1 else ""
            key = (entry.name, ifname)
            current = entry.pids.get(ifname)
            if current == info.pid:
                os.close(pidfd)
            elif ifname in {p.ifname for p in entry.ports} and not self.watcher.running(key, current):
                self._adopt(entry, ifname, info.pid, pidfd)
            else:
                log.warning("ending a stray endpoint (pid %d) of %s/%s: another one serves it",
                            info.pid, entry.name, ifname)
                supervisor.terminate(pidfd)
                os.close(pidfd)

    def _adopt(self, entry: UserNs, ifname: str, pid: int, pidfd: int) -> None:
        entry.pids[ifname] = pid
        entry.started[ifname] = time.monotonic()
        self.watcher.watch((entry.name, ifname), pid, pidfd)
        log.info("adopted endpoint %s/%s (pid %d), found on the machine", entry.name, ifname, pid)

    def _adopt_saved(self, entry: UserNs, saved: dict) -> None:
        """Endpoints of an older version hold no namespace descriptor: a pid from
        state.json is taken only if that process is such an endpoint, on the port's tap."""
        for ifname, pid in dict(saved.get("pids", {})).items():
            if ifname in entry.pids or ifname not in {p.ifname for p in entry.ports}:
                continue
            examined = supervisor.examine(int(pid))
            if examined is None:
                continue
            pidfd, info = examined
            if all(u == self.ep_uid for u in info.uids[:3]) and self._is_endpoint(info) \
                    and info.taps == (ifname,) and not info.held_netns:
                self._adopt(entry, ifname, info.pid, pidfd)
            else:
                os.close(pidfd)

    def _our_pins(self) -> list[str]:
        """Namespaces pinned under our naming; empty pin files (a crash between
        creating the file and the bind mount) are removed."""
        names = []
        try:
            candidates = [e.name for e in os.scandir(netns.NETNS_RUN_DIR)
                          if self.name_re.fullmatch(e.name) and not self.not_users.fullmatch(e.name)]
        except OSError:
            return []
        for name in candidates:
            if netns.exists(name):
                names.append(name)
            else:
                log.warning("removing %s: an empty pin file left by a crash", netns.path_of(name))
                netns.remove(name)
        return names

    def _user_of(self, name: str) -> str | None:
        """The user a pin not in state.json belongs to, if its name tells for
        sure: with sessions in names ("{user}-{session}") a split could give
        another existing user, so such pins wait for a login instead."""
        match = self.name_re.fullmatch(name)
        groups = match.groupdict() if match else {}
        return groups.get("user") if "session" not in groups else None

    # ---- namespaces of the VLAN services ------------------------------------------
    def serve_other(self, entry: UserNs) -> bool:
        """Keep entry (a gateway's namespace, not a user's) like a user's: its
        endpoint found on the machine and adopted, or started, and restarted
        when it ends. Call with entry.lock held; True if anything was made."""
        with self.lock:
            self.others[entry.name] = entry
        if entry.ns_fd is None and netns.exists(entry.name):
            self._hold(entry)
            self._adopt_found(entry, self._found(netns.inode(entry.name)))
        return self.ensure(entry)

    def end_other(self, name: str) -> None:
        """End the endpoints serving namespace `name` (found on the machine) and unpin it."""
        with self.lock:
            entry = self.others.pop(name, None)
        if entry is not None:
            with entry.lock:
                entry.closing = True
                self._stop_endpoints(entry)
                if entry.ns_fd is not None:
                    os.close(entry.ns_fd)
        if netns.exists(name):
            for found in self._found(netns.inode(name)).values():
                for pidfd, _info in found:
                    supervisor.terminate(pidfd)
                    os.close(pidfd)
        netns.remove(name)

    def endpoint_state(self, entry: UserNs, ifname: str) -> tuple[int | None, bool]:
        """The pid of entry's endpoint on ifname and whether it runs."""
        pid = entry.pids.get(ifname)
        return pid, self.watcher.running((entry.name, ifname), pid)

    # ---- up / down / teardown --------------------------------------------------
    def set_up(self, entry: UserNs, up: bool) -> None:
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
            self.dhcp.stop(entry.name)
            resolv.remove(entry.name)
            netns.remove(entry.name)
            with self.lock:
                self.users.pop(entry.name, None)
            self.save()
        log.info("removed %s of %s", entry.name, entry.user.name)

    def collect(self, now: float) -> None:
        """Periodic: re-pin namespaces unpinned by hand, replace dead or hung
        endpoints, retry users that could not be looked up, remove unused
        namespaces per policy. "In use" is judged by the namespace itself (the
        descriptor the daemon holds), never by its pin."""
        if self.dirty:
            self.save()
        self._retry_unresolved()
        by_inode = _namespace_users()
        with self.lock:
            entries = list(self.users.values())
        for entry in entries:
            with entry.lock:
                if entry.closing:
                    continue
                self._keep_working(entry)
                ino = os.fstat(entry.ns_fd).st_ino if entry.ns_fd is not None else None
            in_use = ino is not None and by_inode.get(ino, 0) > 0
            if in_use or self.cfg["after_logout"] == "keep":
                entry.empty_since = None
                continue
            entry.empty_since = entry.empty_since or now
            if now - entry.empty_since >= self.cfg["remove_after"]:
                self.teardown(entry)

    def _keep_working(self, entry: UserNs) -> None:
        try:
            if entry.ns_fd is not None and not netns.exists(entry.name):
                log.warning("%s was unpinned by hand: pinning it again", entry.name)
                self._repin(entry)
            if self._missing(entry):
                self.repair(entry)
            self._ensure_services(entry)
        except (OSError, SessionError) as err:
            log.error("could not repair %s: %s", entry.name, err)

    # ---- state on disk (for re-adoption) ---------------------------------------
    def save(self) -> None:
        """Write state.json atomically (write, fsync, rename); a failure (a full
        run directory) is logged and retried by the collector, never fatal."""
        self.dirty = False
        # Serialised: concurrent saves shared the temporary file (one replace()
        # then failed with ENOENT and an older snapshot could win).
        with self.save_lock:
            with self.lock:
                state = {e.name: {"user": e.user.name, "sessions": sorted(e.sessions), "pids": dict(e.pids),
                                  "netns_inode": e.ns_inode} for e in self.users.values()}
                for name, saved in self.unresolved.items():
                    state.setdefault(name, saved)
            try:
                _write_atomically(self.run_dir / "state.json", json.dumps(state).encode())
            except OSError as err:
                self.dirty = True
                log.warning("could not save state.json (%s); will retry (free space in %s)", err.strerror,
                            self.run_dir)

    def save_soon(self) -> None:
        """Save at once, in the saver thread: a login does not wait for the disk (fsync)."""
        self.save_wanted.set()

    def _saver(self) -> None:
        while True:
            self.save_wanted.wait()
            self.save_wanted.clear()
            try:
                self.save()
            except Exception:
                log.exception("saving state.json")

    def _load_state(self) -> dict[str, dict]:
        """state.json as far as it can be used: anything broken counts as empty
        (what runs is found on the machine anyway)."""
        path = self.run_dir / "state.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("%s is unreadable (%s): going by what runs on the machine", path, err)
            return {}
        if not isinstance(state, dict):
            log.warning("%s holds no entries: going by what runs on the machine", path)
            return {}
        return {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, dict)}

    def adopt(self, lookup: Callable[[str], User]) -> None:
        """After a restart: take over the namespaces and endpoints of the last
        run, found on the machine (pins under our naming, endpoints serving
        them), with state.json adding sessions and users not found by name."""
        self.lookup = lookup
        state = self._load_state()
        found = self._found()
        self._repin_lost(state, found)
        self.dhcp.scan()
        for name in sorted(set(state) | set(self._our_pins())):
            try:
                self._adopt_one(name, state.get(name, {}), lookup, found)
            except (OSError, KeyError, ValueError, TypeError, AttributeError, SessionError) as err:
                # One broken user must not keep every other one offline.
                log.error("could not re-adopt %s: %s; `vxvdex-session reprovision` after "
                          "the next login will rebuild it", name, err)
        for leftover in found.values():  # endpoints of namespaces not ours, or kept unresolved
            for pidfd, _info in leftover:
                os.close(pidfd)
        self.dhcp.end_unclaimed()
        self.save()

    def _adopt_one(self, name: str, saved: dict, lookup: Callable[[str], User],
                   found: dict[int, list[Found]]) -> None:
        user_name = saved.get("user") or self._user_of(name)
        if user_name is None or not netns.exists(name):
            self.unresolved.pop(name, None)
            return
        try:
            user = lookup(user_name)
        except KeyError:
            if name not in self.unresolved:
                log.warning("cannot look up user %s of %s: kept with its endpoints (retried every "
                            "few seconds)", user_name, name)
            self.unresolved[name] = {"user": user_name, "sessions": list(saved.get("sessions", [])),
                                     "pids": dict(saved.get("pids", {}))}
            return
        entry = UserNs(user, name, self.ports_for(user, name), sessions=set(saved.get("sessions", [])))
        entry.ns_fd = netns.open_fd(name)
        self._adopt_found(entry, found)
        self._adopt_saved(entry, saved)
        with self.lock:
            self.users[name] = entry
            self.unresolved.pop(name, None)
        with entry.lock:
            self.ensure(entry)
        log.info("re-adopted %s of %s (endpoints %s)", name, user.name, sorted(entry.pids.values()))

    def _retry_unresolved(self) -> None:
        if not self.unresolved or self.lookup is None:
            return
        before = len(self.unresolved)
        for name, saved in list(self.unresolved.items()):
            with self.lock:
                known = name in self.users
            if known:  # the user logged in again meanwhile
                self.unresolved.pop(name, None)
                continue
            try:
                self._adopt_one(name, saved, self.lookup, {})
            except (OSError, ValueError, TypeError, SessionError) as err:
                log.error("could not re-adopt %s: %s", name, err)
        if len(self.unresolved) != before:
            self.save()

    # ---- reading ---------------------------------------------------------------
    def status(self, entry: UserNs, detail: bool = True, peer_mac: str | None = None) -> dict:
        """What `status USER` shows (detail: up to MAX_PEERS peers), or the
        summary `list` shows for each user (no peers, or only those with
        peer_mac: what `who` looks for); all bounded."""
        ports = []
        for port in entry.ports:
            ep = _read_status(self.status_path(entry, port))
            peers = ep.pop("peers", [])
            ep["peers_total"] = len(peers) if isinstance(peers, list) else 0
            if detail and isinstance(peers, list):
                ep["peers"] = peers[:MAX_PEERS]
            elif peer_mac is not None and isinstance(peers, list):
                ep["peers"] = [p for p in peers if isinstance(p, dict) and p.get("mac") == peer_mac]
            pid = entry.pids.get(port.ifname)
            ports.append({"ifname": port.ifname, "vlan_gid": port.gid, "mac": port.mac.hex(":"),
                          "mtu": port.mtu, "url": self.url_for(port.gid), "endpoint_pid": pid,
                          "endpoint_alive": self.watcher.running((entry.name, port.ifname), pid),
                          "restarts": entry.restarts.get(port.ifname, 0), "endpoint": ep,
                          "stale": self.stale(entry, port) if pid is not None else None})
            service = self.dhcp.status(entry.name, port, _read_status)
            if service is not None:
                if detail:
                    service["addresses6"] = dhcp.addresses(entry.name, port.ifname)
                ports[-1]["dhcp"] = service
        return {"user": entry.user.name, "uid": entry.user.uid, "gid": entry.user.gid,
                "netns": entry.name, "pinned": netns.exists(entry.name),
                "sessions": sorted(entry.sessions), "ports": ports}

    def all_status(self, peer_mac: str | None = None) -> list[dict]:
        with self.lock:
            entries = list(self.users.values())
        return [self.status(e, detail=False, peer_mac=peer_mac) for e in entries]

    def shutdown(self) -> None:
        """Daemon exit: endpoints keep running; they are re-adopted at start."""
        self.save()
        self.zygote.close()


def _read_status(path: Path) -> dict:
    """An endpoint's status file, read as the unprivileged side may have left
    it: no symlink followed, no FIFO waited on, a regular file of bounded size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATUS_BYTES:
            return {}
        found = json.loads(os.read(fd, MAX_STATUS_BYTES))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    return found if isinstance(found, dict) else {}


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _name_pattern(cfg: Config) -> re.Pattern[str]:
    """A regular expression for the namespace names this configuration makes
    (the user and session as groups), to recognise our pins on the machine."""
    template: str = cfg["netns_name"]
    if cfg["scope"] == "session" and "{session}" not in template:
        template += "-{session}"
    parts, seen = [], set()
    for literal, fieldname, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if fieldname:
            parts.append(f"(?P={fieldname})" if fieldname in seen else f"(?P<{fieldname}>[A-Za-z0-9_.@$-]+?)")
            seen.add(fieldname)
    return re.compile("".join(parts))


def _wait_until_ready(path: Path, timeout: float, pid: int) -> None:
    """Until the endpoint has touched its status file (it forwards by then)."""
    deadline = time.monotonic() + timeout
    while supervisor.heartbeat_age(path) is None:
        if time.monotonic() > deadline or not _exists(pid):
            raise SessionError("EIO", f"endpoint (pid {pid}) did not come up; see the journal")
        time.sleep(0.001)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _namespace_users() -> dict[int, int]:
    """How many processes each network namespace (by inode) has."""
    return Counter(ino for _pid, ino in netns.process_namespaces())


def _alive(pid: int) -> bool:
    """Whether a process of this pid exists. Used for PAM openers only: a
    reused pid keeps a session counted longer (towards max_sessions), never
    shorter, so no pidfd is needed there."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
