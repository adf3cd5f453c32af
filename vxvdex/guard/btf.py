"""Offsets of kernel struct members, from the running kernel's BTF
(/sys/kernel/btf/vmlinux), for BPF programs that read kernel memory.

Only what the bind guard needs: the byte offset of a member of a named
struct, found also inside anonymous structs and unions.
"""

from __future__ import annotations

import struct
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
STRUCT, UNION = 4, 5
# bytes that follow a type's 12-byte header: fixed, and per vlen item
EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0),
         15: (0, 12), 17: (4, 0), 19: (0, 12)}


class BtfError(LookupError):
    """The kernel has no BTF, or not the member asked for."""


class Btf:
    def __init__(self, raw: bytes) -> None:
        magic, _v, _f, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", raw)
        if magic != 0xEB9F:
            raise BtfError("not BTF")
        self.strings = raw[hdr_len + str_off:hdr_len + str_off + str_len]
        self.types: list[tuple[int, int, list[tuple[int, int, int]]]] = [(0, 0, [])]  # kind, name, members
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, _size = struct.unpack_from("<III", raw, pos)
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            pos += 12
            members = []
            if kind in (STRUCT, UNION):
                for i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", raw, pos + 12 * i)
                    members.append((m_name, m_type, (m_off & 0xFFFFFF) if kflag else m_off))
            fixed, per = EXTRA.get(kind, (0, 0))
            pos += fixed + per * vlen
            self.types.append((kind, name_off, members))

    def name(self, off: int) -> str:
        return self.strings[off:self.strings.index(b"\0", off)].decode()

    def offset(self, struct_name: str, member: str) -> int:
        """The byte offset of struct_name.member."""
        for kind, name_off, members in self.types:
            if kind == STRUCT and self.name(name_off) == struct_name:
                found = self._find(members, member)
                if found is not None:
                    return found // 8
        raise BtfError(f"no member {member} in struct {struct_name} in the kernel's BTF")

    def _find(self, members: list[tuple[int, int, int]], member: str) -> int | None:
        for m_name, m_type, bits in members:
            if m_name and self.name(m_name) == member:
                return bits
            if not m_name and self.types[m_type][0] in (STRUCT, UNION):  # anonymous: look inside
                inner = self._find(self.types[m_type][2], member)
                if inner is not None:
                    return bits + inner
        return None


def load() -> Btf:
    try:
        return Btf(VMLINUX.read_bytes())
    except OSError as err:
        raise BtfError(f"{VMLINUX}: {err.strerror}") from None
