#!/usr/bin/env python3
"""Bulk TCP transfer with a digest at both ends, for the LAN tests.

  transfer.py serve PORT            accept one connection, print sha256 and size
  transfer.py send HOST PORT BYTES SEED   send BYTES of seeded pseudo-random data,
                                    print sha256 and size
"""

import hashlib
import random
import socket
import sys


def serve(port: int) -> None:
    family = socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(1)
        print("listening", flush=True)
        conn, _ = s.accept()
        digest, size = hashlib.sha256(), 0
        with conn:
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    print(digest.hexdigest(), size, flush=True)


def send(host: str, port: int, total: int, seed: int) -> None:
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with socket.create_connection((host, port), timeout=60) as conn:
        left = total
        while left:
            chunk = rng.randbytes(min(left, 1 << 20))
            conn.sendall(chunk)
            digest.update(chunk)
            left -= len(chunk)
    print(digest.hexdigest(), total, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
