"""Internet checksums (RFC 1071) computed by CPython's bignum code.

The one's complement sum of 16-bit big-endian words is congruent, modulo
0xFFFF, to the big-endian integer the bytes spell (2**16 = 1 mod 0xFFFF).
int.from_bytes and one small modulo run in C, several hundred MB/s, which
is what makes checksumming in a Python data plane affordable.
"""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview


def partial(data: Buffer) -> int:
    """One's complement sum of data (zero-padded to even length), mod 0xFFFF."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value % 0xFFFF


def finish(total: int) -> int:
    """The checksum field for a running sum: never 0, so UDP can use it as is."""
    return 0xFFFF - (total % 0xFFFF)
