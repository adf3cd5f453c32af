"""vxvdex-session: look at and repair vxvdex sessions (users and admins)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import pwd
import sys
import time
from pathlib import Path
from typing import Any

from vxvdex import __version__, config, control
from vxvdex.cli import errors
from vxvdex.cli import vxvdex_session_admin as admin
from vxvdex.control import Answer, DaemonUnavailable

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_UNMANAGED, EXIT_DENIED, EXIT_NONE = 0, 1, 2, 3, 4, 5, 6
EXIT_NO_USER = 7

EPILOG = """\
commands:
  status [USER [SESSION]]
                        your namespace (root: USER's): interfaces, VLAN gid, group,
                        learned peers, counters, endpoint health; with scope: session
                        every session's, or the one named
  list                  every provisioned user on this host, and the gateways of the
                        VLANs it serves with their lease counts (root)
  reprovision [USER [SESSION]]
                        repair: re-pin the namespace, re-create taps, restart endpoints
                        that are gone, hung or stale (see status)
  reprovision --all     (root) the same for every user of this host: after a change
                        of the configuration, of a user's primary gid, or an upgrade
                        (endpoints that serve an older setting or code restart)
  up [USER [SESSION]], down [USER [SESSION]]
                        bring the taps of the namespace up or down
                        (scope: session without SESSION: every session of USER)
  exec USER [SESSION] -- CMD...
                        run CMD inside USER's namespace (root; like `ip netns exec`);
                        scope: session: the named session's, or the only one
  remove USER|--all [--force]
                        (root) end USER's (or every user's) namespaces and endpoints
                        now; refused while processes are in them, unless --force
                        (they stay, cut off from the VLAN, until they exit)
  who MAC|ADDRESS       (root) which user's tap has this MAC or overlay address, or
                        from which host an endpoint of this host learned the MAC

exit status:
  0 ok, 1 the daemon reported an error, or this machine lacks something
  (one line says what to do), 2 bad usage, 3 vxvdexd is not running,
  4 the user is not managed by vxvdex, 5 permission denied, 6 the user has no
  namespace on this host yet (who: nothing found), 7 no such user
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vxvdex-session", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Inspect and repair vxvdex sessions (see vxvdex-session(1)).")
    p.add_argument("--config", type=Path, default=config.DEFAULT_PATH,
                   help="where the run directory is configured (default: %(default)s)")
    p.add_argument("--run-dir", type=Path, help="talk to the daemon of this run directory")
    p.add_argument("--json", action="store_true", help="machine-readable output of read commands")
    p.add_argument("--version", action="version", version=f"vxvdex-session {__version__}")
    p.add_argument("command", choices=("status", "list", "reprovision", "up", "down", "exec", "remove",
                                       "who"))
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="USER [SESSION]; exec: USER [SESSION] -- CMD...; remove: USER|--all [--force]; "
                        "reprovision: --all; who: MAC|ADDRESS")
    return p.parse_args(argv)


def fail(message: str, code: int) -> int:
    print(f"vxvdex-session: {message}", file=sys.stderr)
    return code


def exit_code(answer: Answer) -> int:
    if answer.status == "unmanaged":
        return EXIT_UNMANAGED
    return {"EPERM": EXIT_DENIED, "ENOENT": EXIT_NONE}.get(answer.code, EXIT_FAIL)


def show_status(s: dict) -> None:
    print(f"user {s['user']} (uid {s['uid']}, gid {s['gid']}): namespace {s['netns']}"
          f"{'' if s['pinned'] else ' (NOT PINNED: run reprovision)'}, "
          f"sessions {', '.join(s['sessions']) or 'none'}")
    for p in s["ports"]:
        ep = p["endpoint"]
        health = "running" if p["endpoint_alive"] else "DOWN"
        print(f"  {p['ifname']}: VLAN gid {p['vlan_gid']}, mac {p['mac']}, mtu {p['mtu']}")
        print(f"    {p['url']}")
        print(f"    endpoint pid {p['endpoint_pid']} {health}, restarts {p['restarts']}, "
              f"transport {ep.get('transport', '?')}, unicast port {ep.get('unicast_port', '?')}")
        c = ep.get("counters", {})
        if c:
            drops = sum(c.get("drops", {}).values())
            print(f"    rx {c['rx_frames']} frames {c['rx_bytes']} B, tx {c['tx_frames']} frames "
                  f"{c['tx_bytes']} B, dropped {drops}")
        if c.get("own_mac_seen"):
            print(f"    MAC CONFLICT: {c['own_mac_seen']} frames with this tap's MAC came from "
                  f"{ep.get('own_mac_from')}: that host makes the same MACs (a clone? give it its "
                  "own host name, delete host-id in its run directory, restart its daemon)")
        if p.get("stale"):
            print(f"    STALE: the endpoint serves {p['stale']}: "
                  f"run `vxvdex-session reprovision {s['user']}`")
        if p.get("dhcp"):
            show_dhcp(p["dhcp"])
        for peer in ep.get("peers", []):
            print(f"    peer {peer['mac']} at {peer['address']} port {peer['port']} ({peer['age']} s ago)")


def show_gateway(g: dict) -> None:
    health = "running" if g["dnsmasq_alive"] else "DOWN"
    print(f"gateway {g['netns']}: VLAN {g['group']} (gid {g['vlan_gid']}), {g['gateway4']} on "
          f"{g['subnet']}, {g['gateway6']} on {g['prefix6']}, domain {g['domain']}, egress {g['egress']}")
    print(f"  dnsmasq pid {g['dnsmasq_pid']} {health}, restarts {g['dnsmasq_restarts']}, "
          f"leases {g['leases']} ({g['lease_file']}); endpoint pid {g['endpoint_pid']} "
          f"{'running' if g['endpoint_alive'] else 'DOWN'}")


def gateways(run_dir: Path) -> list[dict]:
    """The gateways this host serves (none from a daemon older than the verb)."""
    answer = control.ask(run_dir, "gateways")
    found = answer.json() if answer.status == "ok" else []
    return found if isinstance(found, list) else []


def show_dhcp(d: dict) -> None:
    """The VLAN service of one tap: gateway, domain, egress, the lease, the addresses."""
    print(f"    gateway {d['gateway4']} / {d['gateway6']}, domain {d['domain']}, egress {d['egress']}, "
          f"DHCP client pid {d['client_pid']} {'running' if d['client_alive'] else 'DOWN'}, "
          f"restarts {d['client_restarts']}")
    if d["state"] == "bound":
        left = max(0, int(d["expires"] - time.time()))
        print(f"    IPv4 {d['address']} from {d['server']}, lease {d['lease_time']} s "
              f"({left} s left), DNS {' '.join(d['dns']) or '-'}")
    else:
        print(f"    IPv4: {d['state']}")
    for a6 in d.get("addresses6", []):
        print(f"    IPv6 {a6}")


def run_exec(run_dir: Path, args: list[str]) -> int:
    if os.geteuid() != 0:
        return fail("exec needs root (it enters another user's namespace)", EXIT_DENIED)
    who = args[:args.index("--")] if "--" in args else []
    cmd = args[len(who) + 1:]
    if not 1 <= len(who) <= 2 or not cmd:
        return fail("usage: vxvdex-session exec USER [SESSION] -- CMD...", EXIT_USAGE)
    answer = control.ask(run_dir, " ".join(["status", *who]))
    if answer.status != "ok":
        return fail(answer.text, exit_code(answer))
    found: Any = answer.json()
    found = found if isinstance(found, list) else [found]
    if len(found) != 1:  # scope: session, several sessions
        sessions = ", ".join(s for f in found for s in f["sessions"]) or "none open"
        return fail(f"{who[0]} has {len(found)} session namespaces: name the session ({sessions})",
                    EXIT_USAGE)
    # `ip netns exec`, not nsenter: the command also sees the namespace's
    # /etc/netns/NAME files (resolv.conf of a served VLAN) and /sys, as a login does.
    os.execvp("ip", ["ip", "netns", "exec", found[0]["netns"], *cmd])


ADMIN_COMMANDS = {"exec": lambda run_dir, args, _json: run_exec(run_dir, args),
                  "remove": lambda run_dir, args, _json: admin.remove(run_dir, args),
                  "who": admin.who}


def main(argv: list[str] | None = None) -> int:
    return errors.run("vxvdex-session", session_main, argv)


def unavailable(err: DaemonUnavailable, run_dir: Path) -> int:
    """Say why the daemon's socket did not answer: absent, or not ours to use."""
    if err.errno in (errno.EACCES, errno.EPERM):
        return fail(f"no permission to use {control.socket_path(run_dir)}: run as root, or let "
                    "vxvdexd create its socket again (`systemctl restart vxvdex`)", EXIT_DENIED)
    return fail(str(err.args[-1]), EXIT_NO_DAEMON)


def session_main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run_dir = a.run_dir or config.load(a.config)["run_dir"]
    except config.ConfigError as err:
        return fail(str(err), EXIT_USAGE)
    try:
        if a.command in ADMIN_COMMANDS:
            return ADMIN_COMMANDS[a.command](run_dir, a.args, a.json)
        if a.command == "reprovision" and a.args == ["--all"]:
            return admin.reprovision_all(run_dir)
        if a.args and a.command != "list" and not admin.user_exists(a.args[0]):
            return fail(f"no such user: {a.args[0]} (see `getent passwd`)", EXIT_NO_USER)
        if len(a.args) > (0 if a.command == "list" else 2):
            return fail(f"{a.command} takes {'no' if a.command == 'list' else 'at most two'} arguments"
                        f"{'' if a.command == 'list' else ' (USER SESSION)'}", EXIT_USAGE)
        answer = control.ask(run_dir, " ".join([a.command, *a.args]))
    except DaemonUnavailable as err:
        return unavailable(err, run_dir)
    if answer.status != "ok":
        who = a.args[0] if a.args else pwd.getpwuid(os.getuid()).pw_name
        hint = {"unmanaged": f"{who} is not managed by vxvdex (not in a managed group)"}.get(answer.status)
        return fail(hint or answer.text, exit_code(answer))
    if a.command in ("status", "list"):
        data: Any = answer.json()
        # list: gateway entries ("kind": "gateway") follow the users' ones.
        served = gateways(run_dir) if a.command == "list" else []
        if a.json:
            print(json.dumps(data + served if served else data, indent=1))
        else:
            for s in data if isinstance(data, list) else [data]:
                show_status(s)
            for g in served:
                show_gateway(g)
    else:
        print(f"{a.command}: done")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
