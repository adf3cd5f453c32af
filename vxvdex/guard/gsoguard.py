"""The sending half of the port guard, for UDP GSO sends.

One send with UDP_SEGMENT is one packet for the nftables output hook and
several datagrams on the wire. The nft rule (guard.py) reads only the
start of its payload, so a user could hide a vxvde header in the second
segment behind a harmless first one. This cgroup egress program (attached
beside the bind programs, on the cgroup2 root) sees the packet before it
is cut and drops it when its first segment carries no vxvde header but a
later one does, unless its socket belongs to root or an allowed uid.

Everything vxvdex sends in batches (the endpoints, the af_vxvdex module's
kernel sockets, which nft does not match) starts every segment with a
header, and a sender whose first segment has one is nft's; so no sender of
vxvde datagrams is touched. IPv6 GSO packets with extension headers of
other users are dropped: the program does not walk them.
"""

from __future__ import annotations

import sys

from vxvdex.guard.bindguard import _insn, _s32

HELPER_SKB_LOAD_BYTES, HELPER_GET_SOCKET_UID = 26, 47
SKB_LEN, SKB_GSO_SEGS, SKB_GSO_SIZE = 0, 164, 176      # struct __sk_buff offsets
MAX_SEGMENTS = 128                                    # UDP_MAX_SEGMENTS (64 before 6.14)
HEADER = int.from_bytes(b"\x08\0\0\0", sys.byteorder)  # the first 4 bytes of a vxvde header

# jump opcodes (BPF_JMP32 | op | BPF_K, or BPF_JMP | op | BPF_X)
JEQ32, JNE32, JLE32, JGE_X, JA = 0x16, 0x56, 0xb6, 0x3d, 0x05


def _load_bytes(offset_reg: int | None, offset: int, size: int) -> list:
    """r0 = bpf_skb_load_bytes(skb, offset, fp - 8, size); then r1 = the bytes."""
    off = [_insn(0xbf, 2, offset_reg)] if offset_reg is not None else [_insn(0xb7, 2, imm=offset)]
    load = {1: 0x71, 4: 0x61}[size]
    return [_insn(0xbf, 1, 6), *off, _insn(0xbf, 3, 10), _insn(0x07, 3, imm=-8), _insn(0xb7, 4, imm=size),
            _insn(0x85, imm=HELPER_SKB_LOAD_BYTES), (JNE32, 0, 0, "allow"), _insn(load, 1, 10, -8)]


def program(allowed_uids: list[int]) -> bytes:
    """r0 = 1 lets the packet go, 0 drops it (the sender gets EPERM)."""
    body: list = [
        _insn(0xbf, 6, 1),                                   # r6 = skb
        _insn(0x61, 0, 6, SKB_GSO_SEGS), (JLE32, 0, 1, "allow"),  # not GSO: the nft rule saw it all
        _insn(0x61, 9, 6, SKB_GSO_SIZE), (JEQ32, 9, 0, "allow"),
        _insn(0x61, 8, 6, SKB_LEN),
        _insn(0xbf, 1, 6), _insn(0x85, imm=HELPER_GET_SOCKET_UID),
        *[(JEQ32, 0, uid, "allow") for uid in sorted({0, *allowed_uids})],
        *_load_bytes(None, 0, 1),                            # version and IHL
        _insn(0xbf, 2, 1), _insn(0x77, 2, imm=4),
        (JEQ32, 2, 6, "v6"), (JNE32, 2, 4, "allow"),
        _insn(0xbf, 7, 1), _insn(0x57, 7, imm=0xF), _insn(0x67, 7, imm=2),  # r7 = IHL * 4
        *_load_bytes(None, 9, 1), (JNE32, 1, 17, "allow"), (JA, 0, 0, "udp"),
        ("v6",),
        *_load_bytes(None, 6, 1), _insn(0xb7, 7, imm=40),
        (JEQ32, 1, 6, "allow"), (JNE32, 1, 17, "deny"),
        ("udp",),
        _insn(0x07, 7, imm=8),                               # r7 = the first segment's payload
        *_load_bytes(7, 0, 4), (JEQ32, 1, HEADER, "allow"),  # a header first: nft's, or vxvdex's
    ]
    for _segment in range(MAX_SEGMENTS - 1):                 # every later segment
        body += [_insn(0x0f, 7, 9), (JGE_X, 7, 8, "allow"),
                 *_load_bytes(7, 0, 4), (JEQ32, 1, HEADER, "deny")]
    body += [(JA, 0, 0, "allow"), ("deny",), _insn(0xb7, 0, imm=0), _insn(0x95),
             ("allow",), _insn(0xb7, 0, imm=1), _insn(0x95)]
    return _assemble(body)


def _assemble(body: list) -> bytes:
    """Resolve (op, dst, src-or-imm, label) jumps to the (label,) marks."""
    labels, pos = {}, 0
    for item in body:
        if isinstance(item, bytes):
            pos += len(item) // 8
        elif len(item) == 1:
            labels[item[0]] = pos
        else:
            pos += 1
    out, pos = b"", 0
    for item in body:
        if isinstance(item, bytes):
            out += item
            pos += len(item) // 8
        elif len(item) == 4:
            code, dst, arg, label = item
            off = labels[label] - pos - 1
            out += _insn(code, dst, arg, off) if code & 0x08 else _insn(code, dst, off=off, imm=_s32(arg))
            pos += 1
    return out

