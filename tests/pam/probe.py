"""Open a PAM session in this process (python-pam) and say where it landed.

usage: probe.py SERVICE USER

Prints one JSON object: the pam_open_session result and messages, this
process's network namespace inode, its interfaces and their up flag, what
/sys/class/net and /etc/resolv.conf show, then the pam_close_session result.
Run as root, as a child of the test: the session changes this process's
namespaces, never the test's.

The handle is started here with a conversation function that stays alive:
python-pam 2.1's authenticate(call_end=False) frees its own when it returns,
and a module that talks to the user in pam_open_session then crashes the
process (SIGSEGV).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
import sys

from pam.__internals import PAM_SUCCESS, PamAuthenticator, PamConv, PamHandle, PamResponse, conv_func

SIOCGIFFLAGS, IFF_UP = 0x8913, 0x1


def links() -> dict[str, bool]:
    """Interfaces of this network namespace: name -> administratively up."""
    found = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("16sH", name.encode(), 0)
            flags = struct.unpack_from("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
            found[name] = bool(flags & IFF_UP)
    return found


def main() -> int:
    service, user = sys.argv[1:3]
    messages: list[str] = []

    @conv_func  # type: ignore[misc]
    def conv(count: int, msgs: object, replies: object, _data: object) -> int:
        replies[0] = ctypes.cast(PamAuthenticator.calloc(count, ctypes.sizeof(PamResponse)),  # type: ignore[index]
                                 ctypes.POINTER(PamResponse))
        messages.extend(msgs[i].contents.msg.decode() for i in range(count))  # type: ignore[index]
        return PAM_SUCCESS

    p = PamAuthenticator()
    talk, handle = PamConv(conv, None), PamHandle()
    rc = p.pam_start(service.encode(), user.encode(), ctypes.byref(talk), ctypes.byref(handle))
    if rc != PAM_SUCCESS:
        print(json.dumps({"start": rc}))
        return 2
    p.handle = handle
    out: dict[str, object] = {"open": p.open_session(), "reason": str(p.reason)}
    out["messages"] = messages
    out["netns"] = os.stat("/proc/self/ns/net").st_ino
    out["links"] = links()
    out["sys_class_net"] = sorted(os.listdir("/sys/class/net"))
    out["cgroup_visible"] = bool(os.listdir("/sys/fs/cgroup"))
    out["resolv_conf"] = open("/etc/resolv.conf").read()  # noqa: SIM115
    out["etc"] = {name: open(f"/etc/{name}").read()  # noqa: SIM115
                  for name in os.environ.get("PROBE_ETC", "").split()}
    out["env"] = p.getenv("VXVDEX_NETNS")
    out["close"] = p.close_session() if out["open"] == 0 else None
    p.end()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
