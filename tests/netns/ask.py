#!/usr/bin/env python3
"""Send one request to vxvdexd as whoever runs this, print the answer as JSON.

    ask.py SOCKET REQUEST

Prints {"answer": TEXT, "fd_inode": INODE or null}: the inode of a descriptor
the daemon passed (the namespace of `open`). Standard library only, so that
it runs as any user.
"""

import array
import json
import os
import socket
import sys


def main(path: str, request: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(20)
        sock.connect(path)
        sock.send(request.encode())
        fds = array.array("i")
        msg, anc, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
    inode = os.fstat(fds[0]).st_ino if fds else None
    for fd in fds:
        os.close(fd)
    print(json.dumps({"answer": msg.decode(errors="replace"), "fd_inode": inode}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
