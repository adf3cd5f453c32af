"""Helpers for the guest tests of the data planes over AF_VXVDEX: users,
leaf namespaces with taps, vxvdex-plug and vde_plug processes (unprivileged
or root), the vxvdex:// vdeplug plugin, captures and pings.

    guest init_net (AF_VXVDEX lower sockets, "host A")   netns vxkt-peer ("host B")
    vxk0 192.0.2.1  <------------- veth ------------->   vxk1 192.0.2.2
      endpoints of the users (AF_VXVDEX), wherever        root endpoints (plain UDP)
      they run: init_net or their leaf namespace

Every endpoint serves one leaf namespace through one tap. A tap is created by
root (`ip tuntap add ... user UID` for a user's endpoint) in the namespace
where its endpoint runs; when that is not the leaf, it is moved into the leaf
once the endpoint has attached to it. Everything made here is removed by
World.close(), which ends the processes it started by PID.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vxkguest as vx

REPO = Path(__file__).resolve().parents[3]
PLUGIN_SRC = REPO / "vdeplug_vxvdex"
PLUGIN_PREBUILT = Path("/vxvdex-kt/vdeplug")  # tests/kernel/run builds it there
PLUGIN_NAME = "libvdeplug_vxvdex.so"
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003


def plug_command() -> list[str]:
    """The Python endpoint: the venv's console script, else the module."""
    script = REPO / ".venv" / "bin" / "vxvdex-plug"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "vxvdex.cli.vxvdex_plug"]


def qemu_command(url: str, tap: str | None = None) -> list[str]:
    """A VM's network without the VM: qemu's vde backend on `url` (vdeplug's
    plugins, ours for vxvdex://) joined through an emulated hub to the tap
    (the VM side), if any. `-machine none` runs no guest code, only backends."""
    cmd = ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
           "-netdev", f"vde,id=lan,sock={url}"]
    if tap:
        cmd += ["-netdev", f"tap,id=vm,ifname={tap},script=no,downscript=no",
                "-netdev", "hubport,id=p0,hubid=0,netdev=vm",
                "-netdev", "hubport,id=p1,hubid=0,netdev=lan"]
    return cmd


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(args)}: rc {r.returncode}: {r.stdout}{r.stderr}".strip())
    return r


def ip(ns: str | None, *args: str) -> None:
    sh("ip", *(["-n", ns] if ns else []), *args)


def in_ns(ns: str | None, cmd: list[str]) -> list[str]:
    """cmd run in netns ns (None: the guest's initial namespace); exec, no fork."""
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *cmd] if ns else cmd


def as_user(user: User | None, cmd: list[str]) -> list[str]:
    """cmd run as user, without capabilities or supplementary groups."""
    if user is None:
        return cmd
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *cmd]


# ---- users ------------------------------------------------------------------


@dataclass
class User:
    name: str
    uid: int
    gid: int
    created: bool


def ensure_user(name: str, gid: int) -> User:
    """A user whose primary (and effective) gid is gid; made if missing."""
    created = False
    try:
        grp.getgrgid(gid)
    except KeyError:
        sh("groupadd", "-g", str(gid), f"vxkt{gid}")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        uid = 61000
        while True:
            try:
                pwd.getpwuid(uid)
                uid += 1
            except KeyError:
                break
        sh("useradd", "-M", "-N", "-u", str(uid), "-g", str(gid), "-d", "/nonexistent",
           "-s", "/usr/sbin/nologin", name)
        pw = pwd.getpwnam(name)
        created = True
    assert pw.pw_gid == gid, f"user {name} exists with gid {pw.pw_gid}, not {gid}"
    return User(name, pw.pw_uid, pw.pw_gid, created)


@contextlib.contextmanager
def guest_users(gids: tuple[int, ...] = (1000, 1001)) -> Iterator[dict[int, User]]:
    """Users vxkt<gid> (made if missing, removed after), and /dev/net/tun
    open to everyone as on a Debian host (a user can only attach its own taps)."""
    made = {g: ensure_user(f"vxkt{g}", g) for g in gids}
    tun = Path("/dev/net/tun")
    mode = tun.stat().st_mode & 0o777
    tun.chmod(0o666)
    try:
        yield made
    finally:
        tun.chmod(mode)
        for u in made.values():
            if u.created:
                sh("userdel", u.name, check=False)


def proc_identity(pid: int) -> dict[str, str]:
    """The Uid, Gid, Groups and Cap* lines of /proc/PID/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"):
            out[key] = " ".join(value.split())
    return out


# ---- the plugin -----------------------------------------------------------


@contextlib.contextmanager
def plugin_installed() -> Iterator[Path]:
    """libvdeplug_vxvdex.so in vdeplug's own plugin directory (the guest's
    overlay, thrown away after the run), through the Makefile's install
    target; built here only when tests/kernel/run did not build it."""
    out = PLUGIN_PREBUILT
    if not (out / PLUGIN_NAME).exists():
        out = Path(tempfile.mkdtemp(prefix="vxkp-so."))
    make = ["make", "-s", "-C", str(PLUGIN_SRC), f"O={out}"]
    sh(*make, "install", timeout=120)
    installed = next(Path("/usr/lib").glob(f"*/vdeplug/{PLUGIN_NAME}"))
    try:
        yield installed
    finally:
        sh(*make, "uninstall", check=False)
        if out != PLUGIN_PREBUILT:
            shutil.rmtree(out, ignore_errors=True)


# ---- processes ------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    terminated: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM, once (a second one could hit a Python endpoint while its
        interpreter shuts down, with the default action)."""
        if self.alive() and not self.terminated:
            self.popen.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (if still running), wait, SIGKILL if it takes too long."""
        self.terminate()
        if self.popen.returncode is None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode


def stop_all(procs: list[Proc]) -> dict[str, int | None]:
    """Stop processes together (SIGTERM to all, then wait): their exit statuses."""
    for p in procs:
        p.terminate()
    return {p.name: p.stop() for p in procs}


def tap_attached(pid: int, tap: str) -> bool:
    """Whether process pid holds a /dev/net/tun descriptor attached to tap."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "/dev/net/tun":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        if f"iff:\t{tap}\n" in info:
            return True
    return False


# ---- leaves ---------------------------------------------------------------


@dataclass
class Leaf:
    """A namespace served by one endpoint through one tap."""

    name: str
    ns: str
    tap: str
    addr: str
    mac: str
    vlan: int
    kind: str                  # "vxvdex-plug", "vde_plug" or "qemu"
    user: User | None          # None: root
    proc: Proc
    status: Path | None = None

    def read_status(self) -> dict[str, Any]:
        assert self.status is not None
        return json.loads(self.status.read_text())  # type: ignore[no-any-return]


@dataclass
class World:
    """Leaves, endpoints and captures of one test module; close() undoes all."""

    prefix: str
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vxkp.")))
    leaves: dict[str, Leaf] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    taps: list[tuple[str | None, str]] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    captures: dict[str, socket.socket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tmp.chmod(0o777)  # the users' endpoints write status files here

    def add_ns(self, name: str) -> str:
        ns = f"{self.prefix}{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        ip(ns, "link", "set", "lo", "up")
        return ns

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     cwd="/", env=env, start_new_session=True)
        p = Proc(name, popen, log)
        self.procs.append(p)
        return p

    def leaf(self, name: str, **spec: Any) -> Leaf:
        """Start one leaf (see leaves)."""
        return self.leaves_started([dict(spec, name=name)])[0]

    def leaves_started(self, specs: list[dict[str, Any]]) -> list[Leaf]:
        """Start leaves, their endpoints all at once (Python starts slowly
        under TCG), each spec the arguments of _start."""
        pending = [self._start(**spec) for spec in specs]
        return [self._finish(*p) for p in pending]

    def _start(self, name: str, *, kind: str, url: str, vlan: int, addr: str, mac: str,
               user: User | None, plug_ns: str | bool | None = None,
               extra: tuple[str, ...] = ()) -> tuple[Leaf, str | None]:
        """The leaf's namespace, a tap in the endpoint's namespace (plug_ns:
        None the initial one, True the leaf itself, or a name), the endpoint."""
        ns = self.add_ns(name)
        where = ns if plug_ns is True else plug_ns or None
        tap = f"{self.prefix}{name}"[:15]
        owner = ["user", str(user.uid)] if user else []
        ip(where, "tuntap", "add", "dev", tap, "mode", "tap", *owner)
        self.taps.append((where, tap))
        ip(where, "link", "set", "dev", tap, "address", mac)
        status = None
        if kind == "vxvdex-plug":
            status = self.tmp / f"{name}.json"
            cmd = [*plug_command(), "--status", str(status), *extra, url, f"tap://{tap}"]
        elif kind == "qemu":
            cmd = qemu_command(url, tap)
        else:
            cmd = ["vde_plug", *extra, url, f"tap://{tap}"]
        env = dict(os.environ, HOME="/nonexistent" if user else "/root")
        proc = self.spawn(name, in_ns(where, as_user(user, cmd)), env)
        return Leaf(name, ns, tap, addr, mac, vlan, kind, user, proc, status), where

    def _finish(self, leaf: Leaf, where: str | None) -> Leaf:
        """Once the endpoint attached: the tap moved into the leaf, configured."""
        proc, tap, ns = leaf.proc, leaf.tap, leaf.ns
        end = time.monotonic() + 60
        while not tap_attached(proc.pid, tap):
            if not proc.alive() or time.monotonic() > end:
                proc.stop()
                raise AssertionError(f"{leaf.name}: {leaf.kind} did not attach to {tap}: {proc.text()}")
            time.sleep(0.05)
        if where != ns:
            ip(where, "link", "set", "dev", tap, "netns", ns)
            self.taps.remove((where, tap))
            self.taps.append((ns, tap))
        ip(ns, "link", "set", "dev", tap, "up")
        ip(ns, "addr", "add", f"{leaf.addr}/24", "dev", tap)
        self.leaves[leaf.name] = leaf
        return leaf

    def capture(self, leaf: Leaf) -> None:
        """Start counting what arrives on the leaf's tap (from now on)."""

        def make() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((leaf.tap, 0))
            s.setblocking(False)
            return s

        self.captures[leaf.name] = vx.setns_thread(leaf.ns, make)

    def incoming(self, leaf: Leaf) -> Counter[str]:
        """Source MACs of the frames that arrived on the leaf's tap so far
        (the leaf's own transmissions, PACKET_OUTGOING, are not counted)."""
        s = self.captures[leaf.name]
        got: Counter[str] = Counter()
        while True:
            try:
                data, addr = s.recvfrom(65536)
            except BlockingIOError:
                return got
            if addr[2] != PACKET_OUTGOING and len(data) >= 14:
                got[data[6:12].hex(":")] += 1

    def close(self) -> None:
        for s in self.captures.values():
            s.close()
        stop_all(self.procs)
        for where, tap in self.taps:
            sh("ip", *(["-n", where] if where else []), "link", "del", "dev", tap, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- traffic --------------------------------------------------------------


def ping_all(pairs: list[tuple[Leaf, str]], count: int = 2, wait: float = 3,
             broadcast: bool = False) -> dict[tuple[str, str], bool]:
    """Ping in parallel from each leaf to each address; which got a reply."""
    b = ["-b"] if broadcast else []
    procs = {
        (leaf.name, target): subprocess.Popen(
            in_ns(leaf.ns, ["ping", *b, "-n", "-q", "-c", str(count), "-i", "0.2", "-W", str(wait), target]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for leaf, target in pairs
    }
    return {key: p.wait(60) == 0 for key, p in procs.items()}


def wait_for(cond: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
