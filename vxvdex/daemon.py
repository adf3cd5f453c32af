"""vxvdexd: the root daemon that gives managed users their VLAN namespace.

Serves the control protocol (control.py) on RUN_DIR/control, one thread per
connection; supervises endpoints (supervisor.py); every few seconds repairs
and collects namespaces (sessions.Manager.collect).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import __version__, cli, config, control
from .control import ProtocolError, Request
from .sessions import Manager, SessionError
from .users import User, is_managed, lookup

log = logging.getLogger("vxvdexd")
COLLECT_EVERY = 2.0


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


class Daemon:
    def __init__(self, cfg: config.Config) -> None:
        self.cfg = cfg
        self.manager = Manager(cfg, underlay_mtu(cfg))
        self.stopping = threading.Event()
        self.handlers: dict[str, Callable[[Request, int], tuple[str, int | None]]] = {
            "open": self.do_open, "close": self.do_close, "status": self.do_status, "list": self.do_list,
            "reprovision": self.do_reprovision, "up": self.do_up, "down": self.do_down,
            "version": lambda req, uid: (f"ok {__version__}", None),
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

    # ---- the verbs -------------------------------------------------------------
    def do_open(self, req: Request, uid: int) -> tuple[str, int | None]:
        user = self.subject(req, uid)
        if not is_managed(user, self.cfg):
            return f"unmanaged {user.name} is not in a managed group", None
        name, fd = self.manager.open(user, req.args[1] if len(req.args) > 1 else "")
        return f"ok {name}", fd

    def do_close(self, req: Request, uid: int) -> tuple[str, int | None]:
        user = self.subject(req, uid)
        if not is_managed(user, self.cfg):
            return f"unmanaged {user.name} is not in a managed group", None
        self.manager.close(user, req.args[1] if len(req.args) > 1 else "")
        return "ok", None

    def do_status(self, req: Request, uid: int) -> tuple[str, int | None]:
        import json
        user = self.subject(req, uid)
        if not is_managed(user, self.cfg):
            return f"unmanaged {user.name} is not in a managed group", None
        return "ok " + json.dumps(self.manager.status(self.manager.find(user.name))), None

    def do_list(self, req: Request, uid: int) -> tuple[str, int | None]:
        import json
        if uid != 0:
            raise SessionError("EPERM", "only root may list every user's namespace")
        return "ok " + json.dumps(self.manager.all_status()), None

    def do_reprovision(self, req: Request, uid: int) -> tuple[str, int | None]:
        user = self.subject(req, uid)
        if not is_managed(user, self.cfg):
            return f"unmanaged {user.name} is not in a managed group", None
        self.manager.reprovision(user.name)
        return "ok", None

    def do_up(self, req: Request, uid: int) -> tuple[str, int | None]:
        return self._set_up(req, uid, True)

    def do_down(self, req: Request, uid: int) -> tuple[str, int | None]:
        return self._set_up(req, uid, False)

    def _set_up(self, req: Request, uid: int, up: bool) -> tuple[str, int | None]:
        user = self.subject(req, uid)
        if not is_managed(user, self.cfg):
            return f"unmanaged {user.name} is not in a managed group", None
        self.manager.set_up(user.name, up)
        return "ok", None

    # ---- serving ---------------------------------------------------------------
    def answer(self, raw: bytes, peer_uid: int) -> tuple[str, int | None]:
        try:
            req = control.parse_request(raw)
            return self.handlers[req.verb](req, peer_uid)
        except ProtocolError as err:
            return f"error EINVAL {err}", None
        except SessionError as err:
            return f"error {err.code} {err}", None
        except OSError as err:
            log.error("request %r failed: %s", raw[:64], err)
            return f"error EIO {err.strerror or err}", None

    def serve_one(self, conn: socket.socket) -> None:
        fd = None
        try:
            conn.settimeout(10)
            _pid, uid, _gid = control.peer_ids(conn)
            raw = conn.recv(control.MAX_MESSAGE + 1)
            text, fd = self.answer(raw, uid)
            control.send_answer(conn, text, fd)
        except OSError as err:
            log.debug("control connection: %s", err)
        finally:
            if fd is not None:
                os.close(fd)
            conn.close()

    def listen(self) -> socket.socket:
        path = control.socket_path(self.cfg["run_dir"])
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.bind(str(path))
        os.chmod(path, 0o666)  # anyone may ask; SO_PEERCRED says who asks
        sock.listen(128)
        return sock

    def serve(self, sock: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                raise
            threading.Thread(target=self.serve_one, args=(conn,), daemon=True).start()

    def collector(self) -> None:
        while not self.stopping.wait(COLLECT_EVERY):
            try:
                self.manager.collect(time.monotonic())
            except Exception:
                log.exception("collecting namespaces")


def setup_logging(level: str) -> None:
    # Under systemd stderr is the journal, which adds time and name itself.
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "vxvdexd: %(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return cli.run("vxvdexd", daemon_main, argv)


def refuse_if_served(run_dir: Path) -> None:
    """Raise Unfit if another vxvdexd answers on run_dir's control socket:
    listen() would take the socket over and leave two daemons fighting."""
    try:
        control.ask(run_dir, "version", timeout=5)
    except OSError:
        return
    raise cli.Unfit(f"another vxvdexd already serves {control.socket_path(run_dir)} (address in use): "
                    "stop it first (`systemctl stop vxvdex`), or give this one another run_dir")


def daemon_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vxvdexd", description="Provision managed users' VLAN namespaces "
                                 "(see vxvdexd(8)).")
    ap.add_argument("--config", type=Path, default=config.DEFAULT_PATH, help="default: %(default)s")
    ap.add_argument("--check", action="store_true", help="check the configuration and exit")
    ap.add_argument("--version", action="version", version=f"vxvdexd {__version__}")
    args = ap.parse_args(argv)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as err:
        print(f"vxvdexd: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(f"vxvdexd: {cfg.source}: configuration is valid")
        return 0
    setup_logging(cfg["log_level"])
    cli.require_privilege("it creates network namespaces and taps")
    cli.require_user(cfg["endpoint_user"], "endpoint_user")
    refuse_if_served(cfg["run_dir"])
    daemon = Daemon(cfg)
    daemon.manager.adopt(lookup)
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
