#!/usr/bin/env python3
"""Open COUNT connections to a control socket and hold them (run as any user).

    flood.py SOCKET COUNT

Raises its own descriptor limit (soft, up to the hard one), connects COUNT
times without sending a word, prints {"connected": N, "failed": {errno: n}}
as one JSON line, then holds every connection until stdin closes. Standard
library only, so that it runs as an unprivileged user.
"""

import json
import resource
import socket
import struct
import sys
from collections import Counter


def main(path: str, count: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 100), hard))
    held, failed = [], Counter()
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Blocking, bounded by SO_SNDTIMEO (as pam_vxvdex does): a non-blocking
        # connect would fail with EAGAIN whenever the backlog is momentarily full.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        try:
            sock.connect(path)
        except OSError as err:
            failed[err.errno] += 1
            sock.close()
            continue
        held.append(sock)
    print(json.dumps({"connected": len(held), "failed": failed}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
