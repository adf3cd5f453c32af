"""The gateway of each VLAN this host serves: a namespace on the VLAN with dnsmasq.

On the serving host (Vlan.served_here) the daemon keeps, per VLAN:
- a gateway namespace (names.gateway_name: vxvdex-gw-<gid>) with its tap
  vde0 and an endpoint, made and supervised by the session manager's own
  code (a user's namespace in all but the user), with a stable MAC;
- the gateway addresses on vde0 (Vlan.gateway4, Vlan.gateway6), and the
  guard against DHCP starvation (dhcpguard.py);
- dnsmasq inside it (dnsmasq.py), supervised here: restarted with backoff
  when it ends, re-adopted after a daemon restart (found by what runs in
  that namespace), replaced if it serves an older configuration;
- the way out (egress.py) when egress is nat.

A gateway whose VLAN has left the file is removed at the next start (the
daemon has no reload): namespace, endpoint, dnsmasq and NAT go, the leases
stay on disk for when it comes back.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from vxvdex.daemon import netns, provision, supervisor
from vxvdex.daemon.manager import Manager, SessionError, UserNs
from vxvdex.daemon.provision import Port
from vxvdex.daemon.supervisor import Backoff, ProcInfo, Watcher
from vxvdex.daemon.users import User
from vxvdex.services import dhcpguard, dnsmasq, names
from vxvdex.services import egress as egressmod
from vxvdex.services.vlans import Vlan

log = logging.getLogger("vxvdexd")
IFA_F_NODAD = 0x02


@dataclass
class Gateway:
    vlan: Vlan
    entry: UserNs                 # the namespace and its endpoint
    dnsmasq: int | None = None    # pid
    restarts: int = 0
    configured: bool = False      # addresses and egress set since this daemon started
    lock: threading.Lock = field(default_factory=threading.Lock)


class Gateways:
    """The gateways of the VLANs served by this host."""

    def __init__(self, manager: Manager, vlans: dict[int, Vlan], host: str, state_dir: Path,
                 egress: egressmod.Egress | None = None) -> None:
        self.manager = manager
        self.cfg = manager.cfg
        self.vlans = vlans
        self.served = {gid: v for gid, v in vlans.items() if v.served_here(host)}
        self.state_dir = state_dir
        self.egress = egress or egressmod.load()
        self.gateways: dict[int, Gateway] = {}
        self.watcher = Watcher(self._dnsmasq_ended)
        self.backoff = Backoff()

    # ---- start, keep, remove ---------------------------------------------------
    def start(self) -> None:
        """At daemon start: remove the gateways of VLANs no longer served here,
        make or re-adopt the others."""
        self.remove_unserved()
        for vlan in self.served.values():
            self.keep(vlan)
        self._egress_cleanup()

    def _egress_cleanup(self) -> None:
        """Ways out of VLANs that no longer have egress: nat here go; with none
        left, the NAT rules go too."""
        nat = {gid for gid, v in self.served.items() if v.egress == "nat"}
        try:
            attached = set(self.egress.attached())
            for gid in attached - nat:
                self.egress.detach(gid)
            if attached and not nat:
                self.egress.remove_all()
        except OSError as err:
            log.error("%s", err)

    def collect(self) -> None:
        """Periodic: whatever of a gateway is missing, dead or stopped is made again."""
        for vlan in self.served.values():
            self.keep(vlan)

    def keep(self, vlan: Vlan) -> None:
        try:
            self.ensure(vlan)
        except (OSError, SessionError) as err:
            log.error("gateway of VLAN %s (gid %d): %s; retrying every few seconds", vlan.group,
                      vlan.gid, err)

    def ensure(self, vlan: Vlan) -> None:
        gw = self.gateways.get(vlan.gid)
        if gw is None:
            gw = self.gateways[vlan.gid] = Gateway(vlan, self._entry(vlan))
        with gw.entry.lock:
            made = self.manager.serve_other(gw.entry)
            if made or not gw.configured:
                netns.enter(gw.entry.name, lambda: _configure(vlan))
                dhcpguard.apply(gw.entry.name, dnsmasq.IFNAME)
                if vlan.egress == "nat":
                    self.egress.attach(gw.entry.name, vlan, self.cfg["network.uplink"])
                else:
                    self.egress.detach(vlan.gid)  # it may have had egress: nat before
                gw.configured = True
        with gw.lock:
            self._ensure_dnsmasq(gw)

    def _entry(self, vlan: Vlan) -> UserNs:
        name = names.gateway_name(self.cfg, vlan.gid)
        who = f"gw-{vlan.gid}"
        mac = provision.stable_mac(self.manager.host_id, who, vlan.gid, dnsmasq.IFNAME)
        port = Port(dnsmasq.IFNAME, vlan.gid, mac, self.manager.mtu)
        return UserNs(User(who, 0, vlan.gid, ()), name, [port])

    def remove_unserved(self) -> None:
        """Gateway namespaces on the machine whose VLAN this host no longer serves."""
        pattern = names.gateway_pattern(self.cfg)
        try:
            pins = [e.name for e in os.scandir(netns.NETNS_RUN_DIR) if pattern.fullmatch(e.name)]
        except OSError:
            return
        for name in pins:
            match = pattern.fullmatch(name)
            gid = int(match.group(1)) if match else -1
            if gid not in self.served:
                self.remove(name, gid)

    def remove(self, name: str, gid: int) -> None:
        """End dnsmasq, the NAT and the endpoint of gateway `name`; unpin it. Leases stay."""
        if netns.exists(name):
            for pidfd, info in self._find_dnsmasq(netns.inode(name)):
                supervisor.terminate(pidfd)
                os.close(pidfd)
                dnsmasq.reap(info.pid)
        try:
            self.egress.detach(gid)
        except OSError as err:
            log.error("%s", err)
        self.manager.end_other(name)
        log.info("removed gateway %s (VLAN gid %d no longer served here; its leases are kept)", name, gid)

    # ---- dnsmasq ---------------------------------------------------------------
    def _ensure_dnsmasq(self, gw: Gateway) -> None:
        """Keep dnsmasq running (called with gw.lock held)."""
        if self.watcher.running(gw.vlan.gid, gw.dnsmasq):
            assert gw.dnsmasq is not None
            if not supervisor.hung(gw.dnsmasq):
                return
            log.warning("dnsmasq of %s (pid %d) is stopped: replacing it", gw.entry.name, gw.dnsmasq)
            for pidfd, _pid in self.watcher.take(gw.vlan.gid):
                supervisor.terminate(pidfd, sig=9)
                os.close(pidfd)
            dnsmasq.reap(gw.dnsmasq)
            gw.dnsmasq = None
            gw.restarts += 1
        assert gw.entry.ns_fd is not None
        if self._adopt_dnsmasq(gw, os.fstat(gw.entry.ns_fd).st_ino):
            return
        pid = dnsmasq.start(gw.entry.name, gw.vlan, self.state_dir)
        gw.dnsmasq = pid
        if not self.watcher.watch(gw.vlan.gid, pid):
            dnsmasq.reap(pid)
            raise OSError(f"dnsmasq of {gw.entry.name} exited at once; see the log")
        log.info("started dnsmasq (pid %d) for VLAN %s in %s", pid, gw.vlan.group, gw.entry.name)

    def _find_dnsmasq(self, ns_inode: int) -> list[tuple[int, ProcInfo]]:
        def ours(info: ProcInfo) -> bool:
            return info.netns == ns_inode and info.cmdline.startswith(dnsmasq.DNSMASQ + " ")
        return list(supervisor.find(dnsmasq.uid(), ours))

    def _adopt_dnsmasq(self, gw: Gateway, ns_inode: int) -> bool:
        """Take over a dnsmasq found running in the gateway namespace, if it
        serves today's configuration; others found there are ended."""
        want = " ".join(dnsmasq.command(gw.vlan, self.state_dir)) + " "
        adopted = False
        for pidfd, info in self._find_dnsmasq(ns_inode):
            if not adopted and info.cmdline == want and self.watcher.watch(gw.vlan.gid, info.pid, pidfd):
                gw.dnsmasq, adopted = info.pid, True
                log.info("adopted dnsmasq (pid %d) of %s, found on the machine", info.pid, gw.entry.name)
                continue
            log.warning("ending dnsmasq (pid %d) in %s: %s", info.pid, gw.entry.name,
                        "another one serves it" if adopted else "it serves an older configuration")
            supervisor.terminate(pidfd)
            os.close(pidfd)
            dnsmasq.reap(info.pid)
        return adopted

    def _dnsmasq_ended(self, key: Hashable, pid: int) -> None:
        assert isinstance(key, int)
        dnsmasq.reap(pid)
        gw = self.gateways.get(key)
        if gw is None:
            return
        with gw.lock:
            if gw.dnsmasq != pid:
                return  # replaced already
            gw.dnsmasq = None
            gw.restarts += 1
        log.warning("dnsmasq of %s (pid %d) ended; restarting it", gw.entry.name, pid)
        time.sleep(self.backoff.delay(key))
        self.keep(gw.vlan)

    # ---- reading ---------------------------------------------------------------
    def status(self) -> list[dict]:
        """What `vxvdex-session list` shows of each gateway."""
        out = []
        for gid, gw in sorted(self.gateways.items()):
            v = gw.vlan
            ep_pid, ep_alive = self.manager.endpoint_state(gw.entry, dnsmasq.IFNAME)
            out.append({
                "kind": "gateway", "netns": gw.entry.name, "vlan_gid": gid, "group": v.group,
                "subnet": str(v.subnet), "gateway4": str(v.gateway4), "prefix6": str(v.prefix6),
                "gateway6": str(v.gateway6), "domain": v.domain, "egress": v.egress,
                "mac": gw.entry.ports[0].mac.hex(":"),
                "dnsmasq_pid": gw.dnsmasq, "dnsmasq_alive": self.watcher.running(gid, gw.dnsmasq),
                "dnsmasq_restarts": gw.restarts, "endpoint_pid": ep_pid, "endpoint_alive": ep_alive,
                "leases": dnsmasq.count_leases(self.state_dir, gid),
                "lease_file": str(dnsmasq.lease_path(self.state_dir, gid))})
        return out


def _configure(vlan: Vlan) -> None:
    """Inside the gateway namespace: its addresses on vde0 (others removed:
    a changed subnet), and no router advertisements taken from the VLAN."""
    from pyroute2 import IPRoute  # imported here: only the daemon needs it

    Path(f"/proc/sys/net/ipv6/conf/{dnsmasq.IFNAME}/accept_ra").write_text("0\n")
    want = {(str(vlan.gateway4), vlan.subnet.prefixlen), (str(vlan.gateway6), 64)}
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=dnsmasq.IFNAME)[0]
        for addr in ipr.get_addr(index=index):
            have = (addr.get_attr("IFA_ADDRESS"), addr["prefixlen"])
            if have not in want and not ipaddress.ip_address(have[0]).is_link_local:
                ipr.addr("del", index=index, address=have[0], prefixlen=have[1])
        ipr.addr("replace", index=index, address=str(vlan.gateway4), prefixlen=vlan.subnet.prefixlen)
        ipr.addr("replace", index=index, address=str(vlan.gateway6), prefixlen=64, flags=IFA_F_NODAD)
