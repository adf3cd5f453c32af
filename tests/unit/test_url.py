"""vdeplug4 URL parsing: what vde_plug accepts, and clear refusals."""

import grp
import ipaddress
import os
import socket

import pytest

from vxvdex.dataplane import url as u


def test_defaults() -> None:
    p = u.parse("vxvde://")
    assert (str(p.group), p.port, p.vni, p.ttl, p.hashsize, p.expiretime) == \
        ("239.0.0.1", 14789, 1, 1, 1024, 128)
    assert p.family == socket.AF_INET


def test_grp_sets_address_tail_and_vni() -> None:
    p = u.parse("vxvde:///grp=1000")
    assert (str(p.group), p.vni) == ("239.0.3.232", 1000)


def test_v6_default_group() -> None:
    p = u.parse("vxvde:///grp=1000/v6")
    assert p.group == ipaddress.ip_address("ff05:56de::3e8")
    assert p.family == socket.AF_INET6


def test_explicit_address_and_options() -> None:
    p = u.parse("vxvde://239.1.2.3/vni=7/port=5000/ttl=3/rcvbuf=4M/hashsize=64/expiretime=10/if=eth0")
    assert (str(p.group), p.vni, p.port, p.ttl, p.rcvbuf, p.hashsize, p.expiretime, p.ifname) == \
        ("239.1.2.3", 7, 5000, 3, 4 << 20, 64, 10, "eth0")


def test_grp_replaces_tail_of_explicit_address_like_vdeplug4() -> None:
    assert str(u.parse("vxvde://239.1.2.3/grp=148").group) == "239.0.0.148"


def test_explicit_vni_wins_over_grp() -> None:
    p = u.parse("vxvde:///grp=1000/vni=5")
    assert (str(p.group), p.vni) == ("239.0.3.232", 5)


def test_abbreviated_options_take_the_first_match_like_vdeplug4() -> None:
    p = u.parse("vxvde:///g=1000/p=4000/v=9")   # g -> grp, p -> port, v -> vni
    assert (p.vni, p.port, str(p.group)) == (9, 4000, "239.0.3.232")


def test_quotes_and_escapes() -> None:
    assert u.split_quoted("a/'b/c'/d\\/e") == ["a", "b/c", "d/e"]


def test_empty_grp_means_our_egid() -> None:
    assert u.parse("vxvde:///grp=").vni == os.getegid()


def test_group_names_resolve() -> None:
    root = grp.getgrgid(0).gr_name
    assert u.parse(f"vxvde:///grp={root}").vni == 0


def test_vxvdex_scheme_defaults_to_egid_and_is_kernel_pinned() -> None:
    p = u.parse("vxvdex://")
    assert p.kernel_pinned and p.vni == os.getegid()


def test_size_suffixes() -> None:
    assert u.parse("vxvde:///rcvbuf=4096k").rcvbuf == 4 << 20
    assert u.parse("vxvde:///rcvbuf=1G").rcvbuf == 1 << 30


@pytest.mark.parametrize(("text", "message"), [
    ("vde://x", "expected vxvde://"),
    ("vxvde:///grp=16777216", "24 bits"),
    ("vxvde:///grp=no-such-group-xyz", "no such group"),
    ("vxvde:///port=0", "port='0': must be an integer from 1 to 65535"),
    ("vxvde:///port=abc", "port='abc'"),
    ("vxvde:///ttl=256", "ttl"),
    ("vxvde:///bogus=1", "unknown option 'bogus'"),
    ("vxvde:///rcvbuf=lots", "rcvbuf"),
    ("vxvde://192.0.2.1", "not a multicast group"),
    ("vxvde://239.0.0.1/v6", "is not IPv6"),
    ("vxvde:///expiretime=0", "expiretime"),
])
def test_bad_urls_are_refused_with_the_option_named(text: str, message: str) -> None:
    with pytest.raises(u.UrlError, match=message):
        u.parse(text)


def test_tap_urls() -> None:
    assert u.tap_name("tap://vde0") == "vde0"
    for bad in ("tap://", "tap://a/b", "tun://x", "tap://" + "x" * 16):
        with pytest.raises(u.UrlError):
            u.tap_name(bad)
