"""The vlans: section: what the file alone can refuse, with file, line and the fix."""

import grp
import ipaddress
from pathlib import Path

import pytest

from vxvdex import config
from vxvdex.services import vlans

P = Path("/etc/vxvdex/vxvdex.yaml")
GOOD = """\
hosts: [node1, node2]
vlans:
  students:
    subnet: 192.0.2.0/25
    server: node1
    egress: nat
  "2001": {subnet: 192.0.2.128/25, server: node2, prefix6: "2001:db8:7::/64", domain: staff.example}
"""


def fake_group(name: str) -> grp.struct_group:
    table = {"students": 1000}
    if name not in table:
        raise KeyError(name)
    return grp.struct_group((name, "x", table[name], []))


def fake_gid(gid: int) -> grp.struct_group:
    if gid != 2001:
        raise KeyError(gid)
    return grp.struct_group(("staff", "x", gid, []))


def test_a_good_section_resolves_with_the_defaults_derived_from_the_gid() -> None:
    cfg = config.parse(GOOD, P)
    served = vlans.resolve(cfg, fake_group, fake_gid)
    students, staff = served[1000], served[2001]
    assert students.prefix6 == ipaddress.IPv6Network("fd78:6400:3e8::/64")
    assert students.domain == "students.vx" and students.egress == "nat"
    assert str(students.gateway4) == "192.0.2.1"
    assert [str(a) for a in students.dhcp_range] == ["192.0.2.2", "192.0.2.126"]
    assert staff.domain == "staff.example" and staff.egress == "none"
    assert str(staff.gateway6) == "2001:db8:7::1"


def test_no_section_means_no_service() -> None:
    assert config.parse("log_level: info\n", P)["vlans"] == {}


@pytest.mark.parametrize(("text", "line", "words"), [
    (GOOD.replace("192.0.2.128/25", "192.0.2.64/26"), 7, "overlaps 192.0.2.0/25"),
    (GOOD.replace("2001:db8:7::/64", "2001:db8:7::/48"), 7, "a /64"),
    (GOOD.replace("server: node1", "server: node9"), 3, "'node9' is not one of hosts:"),
    (GOOD.replace("egress: nat", "egress: open"), 6, "none (the VLAN reaches nothing"),
    (GOOD.replace("subnet: 192.0.2.0/25", "subnet: 192.0.2.1/25"), 4, "host bits zero"),
    (GOOD.replace("    egress: nat\n", "    egres: nat\n"), 6, "unknown setting 'egres'"),
    (GOOD.replace("    server: node1\n", ""), 3, "server missing"),
])
def test_mistakes_are_refused_with_line_and_fix(text: str, line: int, words: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, P)
    assert str(err.value).startswith(f"{P}:{line}: "), err.value
    assert words in str(err.value)


def test_an_unknown_group_is_refused_at_resolution_with_its_line() -> None:
    cfg = config.parse(GOOD.replace("students:", "pupils:"), P)
    with pytest.raises(config.ConfigError, match=rf"^{P}:3: vlans.pupils: no such group; create it"):
        vlans.resolve(cfg, fake_group, fake_gid)


def test_two_gids_never_share_the_default_prefix() -> None:
    assert vlans.ula_prefix(1000) != vlans.ula_prefix(1001)
    assert vlans.ula_prefix((1 << 24) - 1).subnet_of(ipaddress.IPv6Network("fd00::/8"))
