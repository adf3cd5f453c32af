#!/usr/bin/env python3
"""Try TCP connections at once and print what answered, as JSON.

  probe.py TIMEOUT NAME=ADDRESS,PORT [...]

Prints {NAME: "TAG ADDRESS" (the tagserver's answer) or null (no answer
within TIMEOUT seconds, refused or unreachable)}.
"""

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def attempt(target: str, timeout: float) -> str | None:
    addr, port = target.rsplit(",", 1)
    try:
        with socket.create_connection((addr, int(port)), timeout=timeout) as s:
            return s.makefile().readline().strip() or None
    except OSError:
        return None


def main(timeout: float, targets: list[str]) -> None:
    named = dict(t.split("=", 1) for t in targets)
    with ThreadPoolExecutor(len(named)) as pool:
        futures = {name: pool.submit(attempt, t, timeout) for name, t in named.items()}
    print(json.dumps({name: f.result() for name, f in futures.items()}))


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2:])
