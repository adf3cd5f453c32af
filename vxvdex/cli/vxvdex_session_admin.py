"""vxvdex-session's commands for administrators: remove, who, reprovision --all.

Kept apart from user_cli.py (the user's commands) because they act on every
user of the host; all of them need root, which the daemon checks again.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import re
import subprocess
from pathlib import Path
from typing import Any

from vxvdex import control
from vxvdex.cli import vxvdex_session as user_cli

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _need_root(what: str) -> int | None:
    if os.geteuid() != 0:
        return user_cli.fail(f"{what} needs root", user_cli.EXIT_DENIED)
    return None


def _everyone(run_dir: Path, peer_mac: str = "") -> list[dict] | int:
    """Every user's summary; with peer_mac, the peers learned with that MAC too."""
    answer = control.ask(run_dir, f"list {peer_mac.replace(':', '')}".strip())
    if answer.status != "ok":
        return user_cli.fail(answer.text, user_cli.exit_code(answer))
    data: list[dict] = answer.json()  # type: ignore[assignment]
    return data


def remove(run_dir: Path, args: list[str]) -> int:
    if (denied := _need_root("remove")) is not None:
        return denied
    force = "--force" in args
    names = [a for a in args if a != "--force"]
    if len(names) != 1 or len(args) > 2:
        return user_cli.fail("usage: vxvdex-session remove USER|--all [--force]", user_cli.EXIT_USAGE)
    if names == ["--all"]:
        everyone = _everyone(run_dir)
        if isinstance(everyone, int):
            return everyone
        names = sorted({s["user"] for s in everyone})
    elif not user_exists(names[0]):
        return user_cli.fail(f"no such user: {names[0]} (see `getent passwd`)", user_cli.EXIT_NO_USER)
    worst = user_cli.EXIT_OK
    for name in names:
        worst = max(worst, _remove_one(run_dir, name, force))
    return worst


def _remove_one(run_dir: Path, name: str, force: bool) -> int:
    answer = control.ask(run_dir, f"remove {name}" + (" force" if force else ""))
    if answer.status != "ok":
        return user_cli.fail(answer.text, user_cli.exit_code(answer))
    left = int(answer.text or 0)
    print(f"removed the namespace and endpoints of {name}"
          + (f"; {left} processes stay in it, cut off from the VLAN, until they exit" if left else ""))
    return user_cli.EXIT_OK


def reprovision_all(run_dir: Path) -> int:
    if (denied := _need_root("reprovision --all")) is not None:
        return denied
    everyone = _everyone(run_dir)
    if isinstance(everyone, int):
        return everyone
    worst = user_cli.EXIT_OK
    for name in sorted({s["user"] for s in everyone}):
        answer = control.ask(run_dir, f"reprovision {name}")
        print(f"{name}: {'done' if answer.status == 'ok' else answer.text}")
        if answer.status != "ok":
            worst = user_cli.exit_code(answer)
    return worst


# ---- who ------------------------------------------------------------------------

def _ip_json(netns: str, *what: str) -> list[dict]:
    done = subprocess.run(["ip", "-j", "-n", netns, *what], capture_output=True, text=True, check=False)
    try:
        data: list[dict] = json.loads(done.stdout or "[]")
    except ValueError:
        return []
    return data


def _mac_of_address(everyone: list[dict], address: str) -> tuple[list[dict], str | None]:
    """Local taps that carry address; else the MAC a namespace's neighbour table has for it."""
    local, neighbour = [], None
    for s in everyone:
        for link in _ip_json(s["netns"], "addr", "show"):
            if any(ipaddress.ip_address(a["local"]) == ipaddress.ip_address(address)
                   for a in link.get("addr_info", []) if "local" in a):
                local.append({"user": s["user"], "netns": s["netns"], "ifname": link["ifname"],
                              "mac": link.get("address")})
        for entry in _ip_json(s["netns"], "neigh", "show"):
            if entry.get("lladdr") and ipaddress.ip_address(entry["dst"]) == ipaddress.ip_address(address):
                neighbour = neighbour or entry["lladdr"]
    return local, neighbour


def _by_mac(everyone: list[dict], mac: str) -> list[dict]:
    found = []
    for s in everyone:
        for p in s["ports"]:
            if p["mac"] == mac:
                found.append({"mac": mac, "where": "this host", "user": s["user"], "netns": s["netns"],
                              "ifname": p["ifname"], "vlan_gid": p["vlan_gid"]})
            for peer in p["endpoint"].get("peers", []):
                if peer["mac"] == mac:
                    found.append({"mac": mac, "where": "another host", "host": peer["address"],
                                  "port": peer["port"], "vlan_gid": p["vlan_gid"], "age": peer["age"],
                                  "learned_by": s["user"]})
    return found


def _describe(hit: dict) -> str:
    if hit["where"] == "this host":
        return (f"{hit['mac']} is {hit['user']}'s {hit['ifname']} on this host "
                f"(namespace {hit['netns']}, VLAN gid {hit['vlan_gid']})")
    return (f"{hit['mac']} is on host {hit['host']} (VLAN gid {hit['vlan_gid']}, learned "
            f"{hit['age']} s ago by {hit['learned_by']}'s endpoint): run `vxvdex-session who "
            f"{hit['mac']}` on that host")


def who(run_dir: Path, args: list[str], as_json: bool) -> int:
    if (denied := _need_root("who")) is not None:
        return denied
    if len(args) != 1:
        return user_cli.fail("usage: vxvdex-session who MAC|ADDRESS", user_cli.EXIT_USAGE)
    query, hits, via = args[0], [], None
    if MAC_RE.fullmatch(query):
        digits = re.sub("[:-]", "", query.lower())
        mac = ":".join(digits[i:i + 2] for i in range(0, 12, 2))
        everyone = _everyone(run_dir, mac)
        if isinstance(everyone, int):
            return everyone
        hits = _by_mac(everyone, mac)
    else:
        everyone = _everyone(run_dir)
        if isinstance(everyone, int):
            return everyone
        try:
            ipaddress.ip_address(query)
        except ValueError:
            return user_cli.fail(f"{query!r} is neither a MAC (02:ab:..) nor an IP address",
                                 user_cli.EXIT_USAGE)
        local, via = _mac_of_address(everyone, query)
        hits = [{**h, "where": "this host", "vlan_gid": _vlan(everyone, h)} for h in local]
        if not hits and via:
            learned = _everyone(run_dir, via)
            if isinstance(learned, int):
                return learned
            hits = _by_mac(learned, via)
    _print_who(query, hits, via, as_json)
    return user_cli.EXIT_OK if hits else user_cli.EXIT_NONE


def _vlan(everyone: list[dict], hit: dict) -> Any:
    return next((p["vlan_gid"] for s in everyone if s["netns"] == hit["netns"]
                 for p in s["ports"] if p["ifname"] == hit["ifname"]), None)


def _print_who(query: str, hits: list[dict], via: str | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"query": query, "mac": via, "found": hits}, indent=1))
        return
    if not hits:
        print(f"{query}: not seen on this host (no tap has it, no endpoint learned it"
              f"{'' if via is None else f'; a neighbour table maps it to {via}'})")
    for hit in hits:
        print(f"{query}: {_describe(hit)}" if query.lower() != hit["mac"] else _describe(hit))
