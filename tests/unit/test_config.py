"""vxvdex.config.parse: values, defaults and refusals (no root, no files but tmp)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from vxvdex import config
from vxvdex.config import Config, ConfigError, parse

P = Path("/etc/vxvdex/vxvdex.yaml")


def test_empty_text_gives_the_defaults() -> None:
    for text in ("", "# nothing but a comment\n", "---\n# all commented out\n", "~\n"):
        cfg = parse(text, P)
        assert cfg.values == Config().values
        assert cfg.source == str(P)


def test_every_default_passes_its_own_check() -> None:
    for setting in config.SETTINGS:
        assert setting.check(setting.default) == Config()[setting.path], setting.path
    assert Config()["run_dir"] == Path("/run/vxvdex")  # a Path, like a configured one


def test_nested_and_dotted_spellings() -> None:
    nested = parse("network:\n  port: 4789\n  ttl: 3\ninterface:\n  mtu: 1400\n", P)
    dotted = parse("network.port: 4789\nnetwork.ttl: 3\ninterface.mtu: 1400\n", P)
    for cfg in (nested, dotted):
        assert (cfg["network.port"], cfg["network.ttl"], cfg["interface.mtu"]) == (4789, 3, 1400)
        assert cfg["scope"] == "user"


def test_values_are_converted() -> None:
    cfg = parse("managed_groups: [staff, 1234]\nextra_networks: [5000]\nrun_dir: /run/vx\n"
                "network:\n  group_prefix: \"ff05:56de::\"\n  ip_version: 6\n  uplink: eth1\n"
                "remove_after: 0\n", P)
    assert cfg["managed_groups"] == ["staff", "1234"]
    assert cfg["extra_networks"] == ["5000"]
    assert cfg["run_dir"] == Path("/run/vx")
    assert cfg["network.group_prefix"] == ipaddress.ip_address("ff05:56de::")
    assert (cfg["network.ip_version"], cfg["network.uplink"], cfg["remove_after"]) == (6, "eth1", 0)
    assert parse("interface:\n  mtu: auto\n", P)["interface.mtu"] == "auto"


def test_netns_name_per_scope() -> None:
    assert Config().netns_name("alice") == "vxvdex-alice"
    token = config.session_token("s3")
    assert len(token) == 12 and int(token, 16) >= 0
    per_session = parse("scope: session\n", P)
    assert per_session.netns_name("alice", "s3") == f"vxvdex-alice-{token}"
    explicit = parse("scope: session\nnetns_name: u-{session}-{user}\n", P)
    assert explicit.netns_name("alice", "s3") == f"u-{token}-alice"


@pytest.mark.parametrize("template", ["vxvdex-{user}", "v{user}{session}", "v{session}{user}",
                                      "{user}.{session}x"])
def test_session_names_cannot_collide(template: str) -> None:
    """Users and sessions whose strings once met in one name (issue 11 item 6)."""
    cfg = parse(f"scope: session\nnetns_name: \"{template}\"\n", P)
    pairs = [("al", "x-ssh-4242"), ("al-x", "ssh-4242"), ("al", "x-ssh-4242-"), ("alx", "ssh-4242"),
             ("a", "lx-ssh-4242"), ("al-x-ssh", "4242"), ("al", "1"), ("al1", "")]
    names = [cfg.netns_name(u, s) for u, s in pairs]
    assert len(set(names)) == len(names), names


# (text, line, substrings): each refused with FILE:LINE: and these words
REFUSED = [
    ("bogus: 1\n", 1, ["unknown setting 'bogus'"]),
    ("schope: user\n", 1, ["unknown setting 'schope'", "did you mean scope?"]),
    ("interface:\n  nmae: vde0\n", 2, ["interface.nmae", "did you mean interface.name?"]),
    ("scope: bogus\n", 1, ["scope: 'bogus' is not allowed", "one of user, session"]),
    ("network:\n  port: 0\n", 2, ["network.port: 0", "an integer from 1 to 65535"]),
    ("network:\n  port: x\n", 2, ["network.port: 'x'"]),
    ("network:\n  port: 1.5\n", 2, ["network.port: 1.5"]),
    ("network:\n  ttl: 0\n", 2, ["network.ttl: 0", "from 1 to 255"]),
    ("network:\n  ip_version: 5\n", 2, ["network.ip_version: 5", "4 or 6"]),
    ("network:\n  ip_version: true\n", 2, ["network.ip_version: True", "4 or 6"]),
    ("interface:\n  mtu: 575\n", 2, ["interface.mtu: 575", "auto or an integer from 576 to 65535"]),
    ("interface:\n  mtu: 65536\n", 2, ["interface.mtu: 65536"]),
    ("interface:\n  name: a/b\n", 2, ["interface.name: 'a/b'", "interface name"]),
    ("network:\n  group_prefix: 192.0.2.0\n", 2, ["network.group_prefix", "multicast address"]),
    ("network:\n  uplink: [eth0]\n", 2, ["network.uplink: ['eth0']"]),
    ("netns_name: vxvdex\n", 1, ["netns_name: 'vxvdex'", "{user}"]),
    ("netns_name: a b {user}\n", 1, ["netns_name", "{user}"]),
    ("run_dir: relative/dir\n", 1, ["run_dir: 'relative/dir'", "an absolute path"]),
    ("managed_groups: vxvdex\n", 1, ["managed_groups: 'vxvdex'", "list of group names"]),
    ("managed_groups: []\n", 1, ["managed_groups: []", "non-empty"]),
    ("managed_groups: [true]\n", 1, ["managed_groups: [True]"]),
    ("extra_networks: lab\n", 1, ["extra_networks: 'lab'", "list"]),
    ("endpoint_user: Root!\n", 1, ["endpoint_user: 'Root!'", "user or group name"]),
    ("after_logout: delete\n", 1, ["after_logout: 'delete'", "one of keep, remove"]),
    ("remove_after: -1\n", 1, ["remove_after: -1", "from 0 to"]),
    ("log_level: verbose\n", 1, ["log_level: 'verbose'", "debug, info, warning, error"]),
    ("- a\n- b\n", 1, ["expected a mapping of settings"]),
    ("just words\n", 1, ["expected a mapping of settings"]),
    ("scope: user\n  bad: indent\n", 2, ["not valid YAML"]),
    ("managed_groups: [a\n", 2, ["not valid YAML"]),
    ("scope: *anchor\n", 1, ["not valid YAML", "anchor"]),
    ("scope: !!python/object:os.system {}\n", 1, ["scope: not allowed", "constructor"]),
    ("? {a: 1}\n: x\n", 1, ["a setting name must be a plain word"]),
    # Files that broke logins or management although they passed (issue 15 item 1):
    ("netns_name: vx-{user}-{foo}\n", 1, ["netns_name", "{foo}", "only {user} and {session}"]),
    ("netns_name: vx-{user!r}\n", 1, ["netns_name", "{user}"]),
    ("netns_name: vx-{user:>9}\n", 1, ["netns_name", "{user}"]),
    ("netns_name: vx-{}{user}\n", 1, ["netns_name", "only {user} and {session}"]),
    ("netns_name: vx-{user\n", 1, ["netns_name"]),
    ("remove_after: null\n", 1, ["remove_after: None", "an integer from 0 to"]),
    ("network:\n  ip_version: 6\n  group_prefix: 239.1.0.0\n", 3,
     ["network.group_prefix", "239.1.0.0", "IPv4", "network.ip_version is 6", "ff05:56de::"]),
    ("network:\n  group_prefix: \"ff05:56de::\"\n", 2,
     ["network.group_prefix", "ff05:56de::", "IPv6", "network.ip_version is 4", "239.0.0.0"]),
]


@pytest.mark.parametrize(("text", "line", "parts"), REFUSED, ids=[r[0].split("\n")[0] for r in REFUSED])
def test_refusals_name_file_line_setting_and_what_is_allowed(text: str, line: int, parts: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, P)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{P}:{line}: "), message
    for part in parts:
        assert part in message, (part, message)


def test_load_missing_file_gives_defaults(tmp_path: Path) -> None:
    cfg = config.load(tmp_path / "absent.yaml")
    assert cfg.values == Config().values and "missing" in cfg.source


def test_load_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "vxvdex.yaml"
    path.write_bytes(b"scope: user\n\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: not UTF-8"):
        config.load(path)


def test_load_refuses_an_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path)  # a directory


def test_a_setting_given_twice_is_refused_with_both_lines() -> None:
    with pytest.raises(config.ConfigError, match=r"f.yaml:3: scope is set twice \(line 1 too\)"):
        config.parse("scope: user\nrun_dir: /run/x\nscope: session\n", Path("f.yaml"))


def test_where_names_the_line_of_a_setting_or_the_file_for_a_default() -> None:
    cfg = parse("scope: user\nnetwork:\n  ttl: 2\n", P)
    assert (cfg.where("network.ttl"), cfg.where("endpoint_user")) == (f"{P}:3", str(P))


@pytest.mark.parametrize(("text", "underlay", "tap"), [
    ("", 1500, 1450),                                      # IPv4: 14 + 8 + 8 + 20
    ("network:\n  ip_version: 6\n", 1500, 1430),          # IPv6: 14 + 8 + 8 + 40
    ("network:\n  ip_version: 6\n", 9000, 8930),
    ("network:\n  ip_version: 6\ninterface:\n  mtu: 1400\n", 1500, 1400),
])
def test_tap_mtu_auto_subtracts_the_underlay_overhead(text: str, underlay: int, tap: int) -> None:
    assert parse(text, P).tap_mtu(underlay) == tap
