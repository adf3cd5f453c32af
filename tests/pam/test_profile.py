"""etc/pam-configs/vxvdex as pam-auth-update(8) reads it.

pam-auth-update runs in a private mount namespace over copies of
/etc/pam.d, /usr/share/pam-configs and the debconf cache: the machine's own
PAM configuration is never written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lan import REPO, sh

PROFILE = REPO / "etc" / "pam-configs" / "vxvdex"


def session_lines(path: Path) -> list[str]:
    return [" ".join(line.split()) for line in path.read_text().splitlines()
            if line.startswith("session")]


def test_profile_enables_required_module_everywhere(workdir: Path) -> None:
    before = {p: p.read_bytes() for p in Path("/etc/pam.d").glob("common-*")}
    copies = {"/etc/pam.d": workdir / "pam.d", "/usr/share/pam-configs": workdir / "pam-configs",
              "/var/cache/debconf": workdir / "debconf"}
    for real, copy in copies.items():
        shutil.copytree(real, copy, symlinks=True)
    shutil.copy(PROFILE, copies["/usr/share/pam-configs"] / "vxvdex")
    binds = " && ".join(f"mount --bind {copy} {real}" for real, copy in copies.items())
    sh("unshare", "--mount", "--propagation", "private", "sh", "-c",
       f"{binds} && DEBIAN_FRONTEND=noninteractive pam-auth-update --enable vxvdex")
    for name in ("common-session", "common-session-noninteractive"):
        lines = session_lines(copies["/etc/pam.d"] / name)
        assert "session required pam_vxvdex.so" in lines, f"{name}: {lines}"
        assert lines.index("session required pam_vxvdex.so") > lines.index("session required pam_unix.so")
    assert before == {p: p.read_bytes() for p in Path("/etc/pam.d").glob("common-*")}, "host untouched"
