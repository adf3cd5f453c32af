"""The port guard's texts and programs, without root (the netns test loads them)."""

from __future__ import annotations

import ipaddress
import struct

from vxvdex.guard import bindguard, portguard


def test_the_nft_script_replaces_only_its_own_table_whole() -> None:
    script = portguard.ruleset(14789, [0, 105, 105])
    lines = script.splitlines()
    assert lines[:3] == ["table inet vxvdex_guard", "delete table inet vxvdex_guard",
                         "table inet vxvdex_guard {"]
    assert script.count("meta skuid != { 0, 105 }") == 2
    assert "udp dport 14789" in script and "@th,64,32 0x08000000" in script
    assert [w for w in script.split() if w.startswith("table")] == ["table"] * 3
    assert portguard.removal() == "table inet vxvdex_guard\ndelete table inet vxvdex_guard\n"


def _jumps(code: bytes) -> list[tuple[int, int]]:
    """(index, target) of every jump of the program."""
    out = []
    for i in range(0, len(code), 8):
        op, _regs, off, _imm = struct.unpack("<BBhi", code[i:i + 8])
        if op & 0x07 in (0x05, 0x06) and op not in (0x85, 0x95):
            out.append((i // 8, i // 8 + 1 + off))
    return out


def test_every_jump_of_the_bind_program_lands_on_allow_or_deny() -> None:
    v4, v6_ = ipaddress.ip_address("239.0.0.1"), ipaddress.ip_address("ff05:56de::1")
    for v6, group in ((False, v4), (True, v6_), (False, None)):
        code = bindguard.program(1234, 14789, [105], v6, group)
        n = len(code) // 8
        deny, allow = n - 4, n - 2
        assert code[-32:] == (bindguard._insn(0xb7, 0, imm=0) + bindguard._insn(0x95)
                              + bindguard._insn(0xb7, 0, imm=1) + bindguard._insn(0x95))
        assert {target for _i, target in _jumps(code)} <= {deny, allow}
