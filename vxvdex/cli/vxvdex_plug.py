"""vxvdex-plug: join a VLAN from a shell, like `vde_plug vxvde://... tap://...`."""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import signal
import sys
from pathlib import Path

from vxvdex import __version__
from vxvdex.cli import errors
from vxvdex.dataplane import url as urlmod
from vxvdex.dataplane.endpoint import write_status
from vxvdex.dataplane.forwarder import Endpoint
from vxvdex.dataplane.tap import Tap, TapError
from vxvdex.dataplane.transport import TransportError, open_transport

log = logging.getLogger("vxvdex.plug")
DEFAULT_TAP_MTU = 1500  # what the kernel gives a new tap

EPILOG = """\
examples:
  vxvdex-plug vxvde:///grp=1000 tap://vde0
      join the VLAN of gid 1000 (group 239.0.3.232, VNI 1000) over IPv4,
      creating the tap vde0 if it does not exist (needs CAP_NET_ADMIN)
  vxvdex-plug vxvde:///grp=staff/v6 tap://vde0
      the VLAN of group "staff" over IPv6 (ff05:56de::<gid>)
  vxvdex-plug vxvdex:// tap://vde0
      your own egid's VLAN through the af_vxvdex kernel module, unprivileged
      once the tap exists (`ip tuntap add vde0 mode tap user $USER`)
  vxvdex-plug --status /run/user/1000/plug.json vxvde:///grp=1000 tap://t0

URL options (vdeplug4 syntax, after the address, each as /name=value):
  port=N  vni=N  grp=GID|NAME  ttl=N  rcvbuf=SIZE  v4  v6  hashsize=N
  expiretime=SECONDS  if=UPLINK  bind=LOCALADDR

signals: SIGUSR1 logs the counters; SIGTERM or SIGINT sends the leave
datagram and exits 0.
exit status: 0 stopped by a signal, 1 runtime failure (one line says what
this machine lacks and what to do: /dev/net/tun, privilege, the status
file's directory or disk, the UDP port, a multicast route), 2 bad usage.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vxvdex-plug", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Forward frames between a tap interface and a vxvde VLAN "
                    "(wire-compatible with `vde_plug vxvde://`).")
    p.add_argument("url", help="the VLAN: vxvde://[ADDRESS][/opt=value]... or vxvdex://...")
    p.add_argument("tap", help="the local side: tap://IFNAME")
    p.add_argument("--transport", choices=("auto", "vxvdex", "udp"), default="auto",
                   help="auto: AF_VXVDEX sockets if the module is loaded and the VNI is your egid, "
                        "else UDP; vxvdex: always (fails otherwise); udp: never")
    p.add_argument("--status", metavar="FILE", type=Path,
                   help="write counters and learned peers as JSON to FILE every second")
    p.add_argument("--syslog", action="store_true", help="log to syslog instead of stderr")
    p.add_argument("--mtu", type=int, metavar="BYTES",
                   help="largest frame delivered to the tap, without the Ethernet header (default: "
                        "the tap's MTU, followed while the tap stays in this namespace)")
    p.add_argument("--no-merge", action="store_true",
                   help="write every received frame on its own instead of merging TCP segments "
                        "and UDP datagrams")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--version", action="version", version=f"vxvdex-plug {__version__}")
    return p.parse_args(argv)


def setup_logging(use_syslog: bool, verbose: bool) -> None:
    handler: logging.Handler
    if use_syslog and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("vxvdex-plug[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("vxvdex-plug: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def install_signals(endpoint: Endpoint) -> int:
    """SIGTERM/SIGINT stop, SIGUSR1 reports; returns the fd that wakes the loop."""
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda *_: endpoint.stop())
    signal.signal(signal.SIGINT, lambda *_: endpoint.stop())
    signal.signal(signal.SIGUSR1, lambda *_: log.info("status %s", json.dumps(endpoint.status())))
    return rfd


class StatusFile:
    """Rewrites --status every second; a failure is logged once, not fatal."""

    def __init__(self, path: Path, endpoint: Endpoint) -> None:
        self.path, self.endpoint, self.failing = path, endpoint, False

    def write(self) -> None:
        try:
            write_status(self.path, self.endpoint.status())
        except OSError as err:
            if not self.failing:
                log.warning("cannot write %s: %s", self.path, errors.describe(err))
            self.failing = True
        else:
            self.failing = False


def tick(endpoint: Endpoint, status: StatusFile | None) -> None:
    """Once a second: the status file, and the group joined again if the
    uplink was made again (the kernel dropped the membership with it)."""
    if status is not None:
        status.write()
    if endpoint.t.rejoin():
        log.warning("joined %s again (the uplink was made again)", endpoint.t.group[0])


def run(args: argparse.Namespace) -> int:
    url = urlmod.parse(args.url)
    name = urlmod.tap_name(args.tap)
    tap = Tap(name)
    mtu = args.mtu
    if mtu is None:
        try:  # at once: whoever asked for the tap may move it to another namespace any moment
            mtu = tap.mtu()
        except OSError:  # already moved out of our namespace: assume a new tap's MTU
            mtu = DEFAULT_TAP_MTU
    transport = open_transport(url, args.transport)
    endpoint = Endpoint(tap, transport, url.vni, url.hashsize, url.expiretime,
                        max_frame=mtu + 18, mtu_source=None if args.mtu else tap.mtu,
                        merge=not args.no_merge)
    status = None
    if args.status:
        # Written once now, so a missing directory or a full disk stops us at
        # once; later failures only warn: the frames matter more than the file.
        try:
            write_status(args.status, endpoint.status())
        except OSError as err:
            raise errors.Unfit(errors.describe(err, f"--status {args.status}")) from None
        status = StatusFile(args.status, endpoint)
    endpoint.on_tick = lambda: tick(endpoint, status)
    log.info("joined %s via %s sockets (unicast port %d), tap %s", url,
             transport.kind, transport.port, name)
    for note in transport.notes:
        log.info("%s", note)
    wake = install_signals(endpoint)
    try:
        endpoint.run(wake)
    finally:
        endpoint.leave()
        transport.close()
        tap.close()
    log.info("left %s", url)
    return 0


def main(argv: list[str] | None = None) -> int:
    return errors.run("vxvdex-plug", plug_main, argv)


def plug_main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.syslog, args.verbose)
    try:
        return run(args)
    except urlmod.UrlError as err:
        print(f"vxvdex-plug: {err}", file=sys.stderr)
        return 2
    except (TapError, TransportError) as err:
        print(f"vxvdex-plug: {errors.with_hint(str(err.args[-1]), err.errno)}", file=sys.stderr)
        return errors.EXIT_ENVIRONMENT


if __name__ == "__main__":
    sys.exit(main())
