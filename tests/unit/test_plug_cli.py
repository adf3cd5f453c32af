"""The vxvdex-plug command line refuses bad URLs and options before it
touches anything: one line naming what is wrong, exit status 2.

No privilege needed: run as root, the command is run as nobody, so that a
URL that got past parsing would fail on the tap (status 1), not pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUG = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "vxvdex-plug"
NOBODY = 65534


def run_plug(*args: str) -> subprocess.CompletedProcess:
    cmd = [str(PLUG)] if PLUG.exists() else [sys.executable, "-m", "vxvdex.cli.vxvdex_plug"]
    drop: dict = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=30, cwd="/", **drop)


@pytest.mark.parametrize(("url", "named"), [
    ("vxvde:///port=0", "port="),
    ("vxvde:///port=65536", "port="),
    ("vxvde:///port=", "port="),
    ("vxvde:///grp=16777216", "grp=16777216"),
    ("vxvde:///grp=no-such-group-vxt", "grp=no-such-group-vxt"),
    ("vxvde:///grp=\u00b2", "grp="),             # a "digit" int() refuses
    ("vxvde:///vni=16777216", "vni=16777216"),
    ("vxvde:///ttl=256", "ttl="),
    ("vxvde:///ttl=x", "ttl="),
    ("vxvde:///rcvbuf=lots", "rcvbuf="),
    ("vxvde:///rcvbuf=\u00b2", "rcvbuf="),
    ("vxvde:///rcvbuf=4G", "rcvbuf="),
    ("vxvde:///hashsize=0", "hashsize="),
    ("vxvde:///expiretime=0", "expiretime="),
    ("vxvde:///expiretime=2s", "expiretime="),
    ("vxvde:///bogus=1", "'bogus'"),
    ("vxvde://192.0.2.1", "192.0.2.1"),          # not a multicast group
    ("vxvde://239.0.0.1/v6", "/v6"),
    ("vxvde://ff05::1/v4", "/v4"),
    ("vxvdf:///grp=1000", "vxvdf://"),
    ("vxvde:grp=1000", "vxvde:grp=1000"),
])
def test_bad_url_is_refused_in_one_line(url: str, named: str) -> None:
    res = run_plug(url, "tap://vxt0")
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vxvdex-plug: "), res.stderr
    assert named in lines[0]


@pytest.mark.parametrize("tap", ["tap://", "tap://a/b", "tap://a:b", "tap://with space", "tap://" + "x" * 16,
                                 "tap://" + "\u00e9" * 8, "tun://vxt0", "vxt0"])
def test_bad_tap_is_refused_in_one_line(tap: str) -> None:
    res = run_plug("vxvde:///grp=1000", tap)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vxvdex-plug: ") and "tap://" in lines[0], res.stderr


@pytest.mark.parametrize(("args", "named"), [
    (["--transport=carrier-pigeon", "vxvde://", "tap://vxt0"], "--transport"),
    (["--bogus", "vxvde://", "tap://vxt0"], "--bogus"),
    (["vxvde://"], "tap"),
])
def test_bad_options_exit_2_naming_the_option(args: list[str], named: str) -> None:
    res = run_plug(*args)
    assert res.returncode == 2
    # argparse: the usage, then one error line.
    assert res.stderr.splitlines()[-1].startswith("vxvdex-plug: error: ")
    assert named in res.stderr.splitlines()[-1]


def test_a_good_url_gets_past_parsing() -> None:
    """The control: the same command with good arguments fails later, on the tap
    (or, with privileges, runs): it is the arguments that made the status 2."""
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun to fail on")
    res = run_plug("vxvde:///grp=1000/expiretime=2/rcvbuf=4M", "tap://vxt0")
    assert res.returncode == 1, res.stderr
    assert "tap://vxt0" in res.stderr
