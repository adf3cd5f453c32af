"""The man pages in doc/ name every option and command that --help names."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from vxvdex.cli import vxvdex_plug as plug
from vxvdex.cli import vxvdex_session as session
from vxvdex.daemon import vxvdexd as daemon

DOC = Path(__file__).resolve().parents[2] / "doc"


def help_text(main: Callable[[list[str]], object]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    return out.getvalue()


def man_text(page: str) -> str:
    return (DOC / page).read_text().replace("\\-", "-")


@pytest.mark.parametrize(("main", "page"), [(plug.main, "vxvdex-plug.1"), (session.main, "vxvdex-session.1"),
                                            (daemon.main, "vxvdexd.8")])
def test_every_option_of_help_is_in_the_man_page(main: Callable[[list[str]], object], page: str) -> None:
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text(main)))
    assert options, "no options found in --help"
    missing = sorted(o for o in options if o not in man_text(page))
    assert missing == [], f"{page} does not document {missing}"


def test_every_command_of_vxvdex_session_is_in_its_man_page() -> None:
    commands = re.search(r"\{([a-z,]+)\}", help_text(session.main))
    assert commands is not None
    text = man_text("vxvdex-session.1")
    missing = [c for c in commands.group(1).split(",")
               if not re.search(rf"^\.(B|BR) .*\b{c}\b", text, re.MULTILINE)]
    assert missing == []
