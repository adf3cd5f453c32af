"""vxvdexd: the root daemon that gives managed users their VLAN namespace.

Serves the control protocol (control.py) on RUN_DIR/control through
ctlserver.py (bounded threads, per-uid caps, deadlines); supervises
endpoints (supervisor.py); every few seconds repairs and collects
namespaces (sessions.Manager.collect).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vxvdex import __version__, config, control, modparams
from vxvdex.cli import errors
from vxvdex.control import ProtocolError, Request
from vxvdex.daemon import ctlserver, limits
from vxvdex.daemon.manager import Manager, SessionError, UserNs
from vxvdex.daemon.users import DirectoryError, User, check_host, is_managed, lookup
from vxvdex.guard import portguard
from vxvdex.services import vlans
from vxvdex.services.gateway import Gateways

log = logging.getLogger("vxvdexd")
COLLECT_EVERY = 2.0
DEFAULT_STATE_DIR = Path("/var/lib/vxvdex")


def underlay_mtu(cfg: config.Config) -> int:
    """MTU of the uplink, or of the interface the group is routed through."""
    from pyroute2 import IPRoute  # imported here: only the daemon needs it

    with IPRoute() as ipr:
        try:
            if cfg["network.uplink"]:
                index = ipr.link_lookup(ifname=cfg["network.uplink"])[0]
            else:
                dst = "ff05:56de::1" if cfg["network.ip_version"] == 6 else "239.0.0.1"
                index = ipr.route("get", dst=dst)[0].get_attr("RTA_OIF")
            return int(ipr.get_links(index)[0].get_attr("IFLA_MTU"))
        except Exception as err:  # noqa: BLE001 - any netlink failure: use the Ethernet default
            log.warning("cannot find the underlay MTU (%s): no uplink and no multicast route? Add one "
                        "(`ip route add 224.0.0.0/4 dev eth0`) or set network.uplink; assuming 1500",
                        getattr(err, "strerror", None) or err)
            return 1500


@dataclass(frozen=True)
class Caller:
    """Who asks, from SO_PEERCRED."""
    uid: int
    pid: int


class Unmanaged(Exception):
    """The subject of a request is not managed: answered `unmanaged`."""


class Daemon:
    def __init__(self, cfg: config.Config, host_name: str | None = None, state_dir: Path = DEFAULT_STATE_DIR,
                 served: dict[int, vlans.Vlan] | None = None) -> None:
        self.cfg = cfg
        # Simulated hosts share one UTS name: the host name may be given.
        self.host_name = host_name or vlans.this_host()
        self.manager = Manager(cfg, underlay_mtu(cfg), self.host_name)
        self.state_dir = state_dir
        self.gateways = Gateways(self.manager, served or {}, self.host_name, state_dir)
        self.stopping = threading.Event()
        self.handlers: dict[str, Callable[[Request, Caller], tuple[str, int | None]]] = {
            "open": self.do_open, "close": self.do_close, "status": self.do_status, "list": self.do_list,
            "reprovision": self.do_reprovision, "up": self.do_up, "down": self.do_down,
            "version": lambda req, caller: (f"ok {__version__}", None),
            "remove": self.do_remove, "gateways": self.do_gateways,
        }

    # ---- authorisation -------------------------------------------------------
    def subject(self, req: Request, peer_uid: int) -> User:
        """The user a request is about: the named one (root, or oneself) or the caller."""
        if req.args:
            name = req.args[0]
        else:
            try:
                import pwd
                name = pwd.getpwuid(peer_uid).pw_name
            except KeyError:
                raise SessionError("ENOENT", f"uid {peer_uid} has no user name") from None
        try:
            user = lookup(name)
        except KeyError:
            raise SessionError("ENOENT", f"no such user: {name}") from None
        if peer_uid != 0 and peer_uid != user.uid:
            raise SessionError("EPERM", f"only root may act for another user ({name})")
        return user

    def managed(self, req: Request, caller: Caller) -> User:
        """The subject; Unmanaged if vxvdex does not manage them."""
        user = self.subject(req, caller.uid)
        if not is_managed(user, self.cfg):
            raise Unmanaged(user.name)
        return user

    def entries(self, user: User, req: Request) -> list[UserNs]:
        """The named session's entry, the user's one (scope: user), or all the user's."""
        session = req.args[1] if len(req.args) > 1 else ""
        if session or self.cfg["scope"] == "user":
            entry = self.manager.find(user, session)
            if session and session not in entry.sessions:
                raise SessionError("ENOENT", f"{user.name} has no session {session} on this host")
            return [entry]
        found = self.manager.find_all(user)
        if not found:
            raise SessionError("ENOENT", f"{user.name} has no namespace on this host (log in first)")
        return found

    # ---- the verbs -------------------------------------------------------------
    def do_open(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        user = self.managed(req, caller)
        session = req.args[1] if len(req.args) > 1 else ""
        name, fd = self.manager.open(user, session, opener=caller.pid, by_root=caller.uid == 0)
        return f"ok {name}", fd

    def do_close(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        user = self.managed(req, caller)
        self.manager.close(user, req.args[1] if len(req.args) > 1 else "")
        return "ok", None

    def do_status(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        import json
        user = self.managed(req, caller)
        found = [self.manager.status(e) for e in self.entries(user, req)]
        one = self.cfg["scope"] == "user" or len(req.args) > 1
        return "ok " + json.dumps(found[0] if one else found), None

    def do_list(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        import json
        if caller.uid != 0:
            raise SessionError("EPERM", "only root may list every user's namespace")
        mac = req.args[0].lower() if req.args else None
        if mac is not None and not re.fullmatch(r"[0-9a-f]{12}", mac):
            raise ProtocolError("list takes no argument, or a MAC as 12 hex digits")
        peer_mac = None if mac is None else ":".join(mac[i:i + 2] for i in range(0, 12, 2))
        return "ok " + json.dumps(self.manager.all_status(peer_mac)), None

    def do_gateways(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        import json
        if caller.uid != 0:
            raise SessionError("EPERM", "only root may list the gateways")
        return "ok " + json.dumps(self.gateways.status()), None

    def do_reprovision(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        user = self.managed(req, caller)
        for entry in self.entries(user, req):
            self.manager.reprovision(entry, user)  # the user as now: a changed gid applies
        return "ok", None

    def do_up(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        return self._set_up(req, caller, True)

    def do_remove(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        """remove USER [force]: end USER's namespaces and endpoints now (root)."""
        if caller.uid != 0:
            raise SessionError("EPERM", "only root may remove a user's namespace")
        if req.args[1:] not in ((), ("force",)):
            raise ProtocolError("remove takes USER and optionally the word force")
        user = self.subject(req, caller.uid)
        return f"ok {self.manager.remove(user, force=bool(req.args[1:]))}", None

    def do_down(self, req: Request, caller: Caller) -> tuple[str, int | None]:
        return self._set_up(req, caller, False)

    def _set_up(self, req: Request, caller: Caller, up: bool) -> tuple[str, int | None]:
        user = self.managed(req, caller)
        for entry in self.entries(user, req):
            self.manager.set_up(entry, up)
        return "ok", None

    # ---- serving ---------------------------------------------------------------
    def answer(self, raw: bytes, caller: Caller) -> tuple[str, int | None]:
        try:
            req = control.parse_request(raw)
            return self.handlers[req.verb](req, caller)
        except ProtocolError as err:
            return f"error EINVAL {err}", None
        except SessionError as err:
            return f"error {err.code} {err}", None
        except Unmanaged as err:
            return f"unmanaged {err} is not in a managed group", None
        except DirectoryError as err:
            log.error("request %r refused: %s", raw[:64], err)
            return f"error EIO {err}", None
        except OSError as err:
            log.error("request %r failed: %s", raw[:64], err)
            return f"error EIO {err.strerror or err}", None

    def serve_one(self, conn: socket.socket, raw: bytes, uid: int) -> None:
        """Answer one request that has arrived on conn (ctlserver runs this in a worker)."""
        fd = None
        try:
            pid = control.peer_ids(conn)[0]  # the opener of a session (pam_vxvdex's process)
            text, fd = self.answer(raw, Caller(uid, pid))
            control.send_answer(conn, text, fd)
        except OSError as err:
            log.debug("control connection: %s", err)
        finally:
            if fd is not None:
                os.close(fd)

    def listen(self) -> socket.socket:
        path = control.socket_path(self.cfg["run_dir"])
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.bind(str(path))
        os.chmod(path, 0o666)  # anyone may ask; SO_PEERCRED says who asks
        sock.listen(4096)  # capped by net.core.somaxconn
        return sock

    def serve(self, sock: socket.socket) -> None:
        server = ctlserver.Server(sock, self.serve_one, self.stopping)
        server.start_workers()
        server.serve()

    def collector(self) -> None:
        while not self.stopping.wait(COLLECT_EVERY):
            try:
                self.manager.collect(time.monotonic())
            except Exception:
                log.exception("collecting namespaces")
            try:
                self.gateways.collect()
            except Exception:
                log.exception("keeping the gateways")


def start_guard(cfg: config.Config, endpoint_uid: int) -> bool:
    """Install (or, when turned off, remove) the port guard; False: refuse to start."""
    try:
        log.info("%s", portguard.sync(cfg["port_guard"], cfg["network.port"], [endpoint_uid],
                                  cfg["network.ip_version"], cfg["network.group_prefix"]))
    except portguard.GuardError as err:
        log.error("cannot set up the port guard: %s", err)
        return False
    return True


def remove_guard() -> int:
    try:
        portguard.remove_all()
    except (portguard.GuardError, OSError) as err:
        print(f"vxvdexd: cannot remove the port guard: {err}", file=sys.stderr)
        return 1
    return 0


def setup_logging(level: str) -> None:
    # Under systemd stderr is the journal, which adds time and name itself.
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "vxvdexd: %(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return errors.run("vxvdexd", daemon_main, argv)


def host_name(text: str) -> str:
    """--host-name: a short host name, as hosts: lists it."""
    if not vlans.HOST_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a short host name (lowercase letters, digits, -)")
    return text


def refuse_if_served(run_dir: Path) -> None:
    """Raise Unfit if another vxvdexd answers on run_dir's control socket:
    listen() would take the socket over and leave two daemons fighting."""
    try:
        control.ask(run_dir, "version", timeout=5)
    except OSError:
        return
    raise errors.Unfit(f"another vxvdexd already serves {control.socket_path(run_dir)} (address in use): "
                    "stop it first (`systemctl stop vxvdex`), or give this one another run_dir")


def daemon_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vxvdexd", description="Provision managed users' VLAN namespaces "
                                 "(see vxvdexd(8)).")
    ap.add_argument("--config", type=Path, default=config.DEFAULT_PATH, help="default: %(default)s")
    ap.add_argument("--check", action="store_true", help="check the configuration and exit")
    ap.add_argument("--remove-guard", action="store_true",
                    help="remove the port guard of this network namespace and exit (package removal)")
    ap.add_argument("--host-name", type=host_name, default=None,
                    help="this host's name as hosts: and vlans: name it (default: the short host name)")
    ap.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                    help="where DHCP leases are kept (default: %(default)s)")
    ap.add_argument("--version", action="version", version=f"vxvdexd {__version__}")
    args = ap.parse_args(argv)
    if args.remove_guard:
        return remove_guard()
    try:
        cfg = config.load(args.config)
        check_host(cfg)
        served = vlans.resolve(cfg)
    except config.ConfigError as err:
        print(f"vxvdexd: {err}", file=sys.stderr)
        return 2
    me = args.host_name or vlans.this_host()
    if served and cfg["hosts"] and me not in cfg["hosts"]:
        print(f"vxvdexd: warning: this host ({me}) is not one of hosts: in {cfg.source}; it serves no "
              "VLAN (give --host-name, or add it to hosts:)", file=sys.stderr)
    if args.check:
        for problem in modparams.disagreements(cfg):
            print(f"vxvdexd: warning: {problem}", file=sys.stderr)
        print(f"vxvdexd: {cfg.source}: configuration is valid")
        return 0
    setup_logging(cfg["log_level"])
    for problem in modparams.disagreements(cfg):
        log.warning("%s", problem)
    errors.require_privilege("it creates network namespaces and taps")
    refuse_if_served(cfg["run_dir"])
    limits.raise_nofile()
    try:
        daemon = Daemon(cfg, me, args.state_dir, served)
    except config.ConfigError as err:  # a vlans: group NSS no longer knows
        log.error("%s", err)
        return 2
    if not start_guard(cfg, daemon.manager.ep_uid):
        return 1
    daemon.manager.adopt(lookup)
    daemon.gateways.start()
    sock = daemon.listen()

    def stop(*_: object) -> None:
        daemon.stopping.set()
        sock.shutdown(socket.SHUT_RDWR)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=daemon.collector, name="collector", daemon=True).start()
    log.info("vxvdexd %s listening on %s (config %s)", __version__, control.socket_path(cfg["run_dir"]),
             cfg.source)
    daemon.serve(sock)
    daemon.manager.shutdown()
    log.info("stopped; endpoints keep running and are re-adopted at the next start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
