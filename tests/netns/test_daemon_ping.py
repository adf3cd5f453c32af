"""A managed user can ping from her namespace without privileges.

Debian 13's ping has no cap_net_raw file capability: it opens an ICMP
datagram socket (SOCK_DGRAM, IPPROTO_ICMP), which the kernel allows only to
groups in net.ipv4.ping_group_range. Every new network namespace starts
with `1 0` (nobody); systemd opens the range in the host's namespace only.
vxvdexd must give a user's namespace its host's range, so the test uses such
a socket directly (on Debian 12 too, whose ping would use its capability).

    h1 (range opened, as systemd does)      h2 (range of bob's gid only)
      alice's ns: vde0 198.51.100.1  ----   bob's ns: vde0 198.51.100.2
"""

from __future__ import annotations

import pwd
import sys

from cluster import Cluster
from lan import sh
from provisioned import add_addr

from vxvdex.daemon import netns

RANGE = "/proc/sys/net/ipv4/ping_group_range"
# One echo request on an ICMP datagram socket; exit 0 on the reply.
PING = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(5)
s.sendto(bytes([8, 0, 0, 0, 0, 0, 0, 1]) + b"vxvdex", (sys.argv[1], 0))
reply = s.recv(1500)
sys.exit(0 if reply[0] == 0 and reply.endswith(b"vxvdex") else 3)
"""


def ping_range(cluster: Cluster, ns: str) -> list[str]:
    return cluster.lan.run(ns, "cat", RANGE).stdout.split()


def ping_as(user: str, ns: str, target: str) -> tuple[int, str]:
    """An ICMP datagram-socket ping by `user` (no privileges) inside ns."""
    res = sh("nsenter", f"--net={netns.path_of(ns)}", "--", "setpriv", f"--reuid={user}",
             f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups", sys.executable, "-c", PING, target,
             check=False)
    return res.returncode, res.stderr


def test_unprivileged_ping_in_a_provisioned_namespace(cluster: Cluster) -> None:
    group = f"vxa{cluster.tag}"
    gid = cluster.group(group)
    alice, bob = cluster.user("alice", group), cluster.user("bob", group)
    h1, h2 = cluster.lan.host(1), cluster.lan.host(2)
    cluster.lan.run(h1, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    cluster.lan.run(h2, "sysctl", "-qw", f"net.ipv4.ping_group_range={gid} {gid}")
    cluster.start(1)
    cluster.start(2)
    ns_a, ns_b = cluster.open(1, alice), cluster.open(2, bob)
    add_addr(ns_a, "198.51.100.1/24")
    add_addr(ns_b, "198.51.100.2/24")
    assert ping_range(cluster, ns_a) == ["0", "2147483647"], "the host's range"
    assert ping_range(cluster, ns_b) == [str(gid), str(gid)], "the host's range, whatever it is"
    assert ping_as(alice, ns_a, "198.51.100.2") == (0, "")
    assert ping_as(bob, ns_b, "198.51.100.1") == (0, "")
    code, err = ping_as("nobody", ns_b, "198.51.100.1")
    assert code != 0 and "PermissionError" in err, "a group outside h2's range may not"
