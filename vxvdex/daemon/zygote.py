"""The endpoint fork server.

A small single-threaded process, started by the daemon, that has imported
everything an endpoint needs and forks one child per endpoint on request.
Children share the zygote's interpreter pages copy-on-write, which keeps
the memory per user small, and start in milliseconds (no exec, no imports).
Requests arrive on a SOCK_SEQPACKET socket: an endpoint Spec as JSON with
the tap descriptor attached, then a descriptor of the user's network
namespace, which the child keeps open for its whole life without using it:
it tells the daemon, after a restart, which namespace an endpoint serves
(supervisor.find). The answer is the child's pid. The zygote exits
when the daemon closes the socket; running endpoints are not affected.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
import traceback

from vxvdex.dataplane import endpoint

MAX_MSG = 65536


def recv_with_fds(sock: socket.socket, maxfds: int = 4) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(MAX_MSG, socket.CMSG_SPACE(maxfds * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


def child(sock: socket.socket, spec_raw: bytes, tap_fd: int) -> None:
    """In the forked child: become the endpoint, never return (the namespace
    descriptor stays open: it names the namespace this endpoint serves)."""
    code = 1
    try:
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        code = endpoint.run(endpoint.Spec.loads(spec_raw), tap_fd)
    except BaseException:  # noqa: BLE001 - the child must never return into the loop
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def serve(sock: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        msg, fds = recv_with_fds(sock)
        if not msg:
            return
        pid = os.fork()
        if pid == 0:
            child(sock, msg, fds[0])
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        serve(sock)
    except (ConnectionError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
