"""`vxvdexd --check` refuses every invalid configuration with exit status 2
and one line that names the file, the line, the setting, what is wrong and
what is allowed."""

from __future__ import annotations

import grp
import pwd
import subprocess
from pathlib import Path

import pytest
from lan import tool
from runtrace import _known

# (case, file content, line, substrings of the message besides FILE:LINE:)
INVALID: list[tuple[str, bytes, int, tuple[str, ...]]] = [
    ("unknown setting", b"scope: user\nafter_lgout: remove\n", 2,
     ("unknown setting 'after_lgout'", "did you mean after_logout?")),
    ("unknown nested setting", b"interface:\n  name: vde0\n  speed: 10\n", 3,
     ("unknown setting 'interface.speed'",)),
    ("setting outside its section", b"port: 14789\n", 1, ("unknown setting 'port'", "network.port")),
    ("bad enum", b"scope: bogus\n", 1, ("scope", "'bogus'", "one of user, session")),
    ("bad enum after_logout", b"after_logout: delete\n", 1, ("after_logout", "'delete'", "keep, remove")),
    ("port zero", b"network:\n  port: 0\n", 2, ("network.port", "0 is not allowed", "from 1 to 65535")),
    ("port not a number", b'network:\n  port: "x"\n', 2, ("network.port", "'x'", "from 1 to 65535")),
    ("port too big", b"network:\n  port: 65536\n", 2, ("network.port", "65536", "from 1 to 65535")),
    ("port a boolean", b"network:\n  port: true\n", 2, ("network.port", "True", "integer")),
    ("ip version 5", b"network:\n  ip_version: 5\n", 2, ("network.ip_version", "5", "4 or 6")),
    ("mtu too small", b"interface:\n  mtu: 100\n", 2, ("interface.mtu", "100", "auto", "576 to 65535")),
    ("mtu a word", b"interface:\n  mtu: big\n", 2, ("interface.mtu", "'big'", "auto", "576 to 65535")),
    ("unicast group prefix", b"network:\n  group_prefix: 10.0.0.0\n", 2,
     ("network.group_prefix", "10.0.0.0", "multicast address")),
    ("group prefix not an address", b"network:\n  group_prefix: lan\n", 2,
     ("network.group_prefix", "'lan'", "multicast address")),
    ("template without {user}", b"netns_name: vxvdex-{session}\n", 1,
     ("netns_name", "'vxvdex-{session}'", "containing {user}")),
    ("template with a slash", b"netns_name: ../{user}\n", 1, ("netns_name", "'../{user}'", "{user}")),
    ("relative run_dir", b"run_dir: run/vxvdex\n", 1, ("run_dir", "'run/vxvdex'", "an absolute path")),
    ("empty group list", b"managed_groups: []\n", 1, ("managed_groups", "[]", "non-empty list")),
    ("interface name too long", b"interface:\n  name: averyveryverylongname\n", 2,
     ("interface.name", "averyveryverylongname", "1-15")),
    ("negative remove_after", b"remove_after: -1\n", 1, ("remove_after", "-1", "from 0 to")),
    ("bad log level", b"log_level: verbose\n", 1, ("log_level", "'verbose'", "debug, info, warning, error")),
    ("yaml syntax", b"scope: user\n  after_logout: keep\n", 2, ("not valid YAML",)),
    ("yaml unclosed list", b"scope: user\nmanaged_groups: [a, b\nrun_dir: /run/x\n", 3, ("not valid YAML",)),
    ("top level a list", b"- scope\n- user\n", 1, ("expected a mapping of settings",)),
    ("top level a word", b"scope\n", 1, ("expected a mapping of settings",)),
    ("section a scalar", b"network: 5\n", 1, ("unknown setting 'network'",)),
    ("python tag", b"scope: !!python/name:os.system x\n", 1, ("scope", "not allowed", "python/name")),
    ("key a list", b"? [a, b]\n: 1\n", 1, ("setting name",)),
    ("not UTF-8", b"scope: user\nrun_dir: /run/\xff\n", 2, ("not UTF-8",)),
    # Files that passed the check and then broke logins or management (issue 15 item 1):
    ("unknown managed group", b"scope: user\nmanaged_groups: [users, nosuchgroupxyz]\n", 2,
     ("managed_groups", "no group 'nosuchgroupxyz'", "groupadd", "gid")),
    ("unknown managed gid", b"managed_groups: [3999999]\n", 1, ("managed_groups", "no group 3999999",)),
    ("missing endpoint user", b"managed_groups: [users]\nendpoint_user: nosuchuserxyz\n", 2,
     ("endpoint_user", "no user 'nosuchuserxyz'", "adduser --system --group", "nosuchuserxyz")),
    ("unknown placeholder", b"netns_name: \"vx-{user}-{foo}\"\n", 1, ("netns_name", "{foo}")),
    ("remove_after null", b"remove_after: null\n", 1, ("remove_after", "None", "from 0 to")),
    ("IPv4 prefix with IPv6", b"network:\n  ip_version: 6\n  group_prefix: 239.0.0.0\n", 3,
     ("network.group_prefix", "IPv4", "ip_version is 6")),
]


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("vxvdexd"), "--config", str(path), "--check"], capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize(("text", "line", "expected"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_config_is_refused_in_one_line(tmp_path: Path, text: bytes, line: int,
                                                expected: tuple[str, ...]) -> None:
    path = tmp_path / "vxvdex.yaml"
    path.write_bytes(text)
    res = check(path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"vxvdexd: {path}:{line}: "), lines[0]
    for part in expected:
        assert part in lines[0], (part, lines[0])


def test_valid_config_passes_the_check(tmp_path: Path) -> None:
    path = tmp_path / "vxvdex.yaml"
    path.write_text("managed_groups: [users, 50]\nscope: session\nnetns_name: vx-{user}-{session}\n"
                    "interface:\n  name: vde0\n  mtu: 1400\nnetwork:\n  port: 4789\n  ip_version: 6\n"
                    "  group_prefix: \"ff05:56de::\"\n  ttl: 2\nextra_networks: [staff]\n"
                    "after_logout: remove\nremove_after: 0\nrun_dir: /run/vxvdex-test\nlog_level: debug\n")
    res = check(path)
    assert (res.returncode, res.stderr) == (0, "")
    assert str(path) in res.stdout and "valid" in res.stdout


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    res = check(tmp_path / "absent.yaml")
    if _known(grp.getgrnam, "vxvdex") and _known(pwd.getpwnam, "vxvdex-endpoint"):
        assert res.returncode == 0 and "defaults" in res.stdout
    else:  # the package creates both; a default that names nobody is refused like a written one
        assert res.returncode == 2 and "(default)" in res.stderr and "vxvdex-endpoint" not in res.stdout


AT_START = ("unknown managed group", "missing endpoint user")


@pytest.mark.parametrize("case", [c for c in INVALID if c[0] in AT_START], ids=lambda c: c[0])
def test_the_daemon_refuses_to_start_with_the_same_line(tmp_path: Path, case: tuple) -> None:
    """Not only --check: a start (as systemd's ExecStart does) is refused the same way, no traceback."""
    path = tmp_path / "vxvdex.yaml"
    path.write_bytes(case[1] + f"run_dir: {tmp_path}/run\n".encode())
    res = subprocess.run([tool("vxvdexd"), "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith(f"vxvdexd: {path}:{case[2]}: "), res.stderr
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert not (tmp_path / "run").exists()
