"""The receiving half of the port guard: who may bind the vxvde port.

A multicast datagram reaches every socket bound to its port, so whoever
can bind the port reads every VLAN that this host has joined. nftables
cannot help (its hooks see a packet once, not once per receiving socket)
and systemd's SocketBindDeny= needs a systemd built with the BPF framework,
which Debian 12's is not. So the guard is the kernel's own bind hook: a
cgroup BPF_CGROUP_INET4_BIND / INET6_BIND program attached (with
BPF_F_ALLOW_MULTI, beside systemd's) to the root of the cgroup2 hierarchy,
which sees every bind() of the machine. It refuses (EPERM) a bind to the
UDP port when all of these hold:

- the socket is in the network namespace of the daemon (netns cookie);
- the caller's uid is neither 0 nor the endpoint user's;
- the address is not the VLAN group of the caller's own gid: that one
  VLAN is what the af_vxvdex module grants every user anyway (its kernel
  sockets bind in the user's context, so they must keep passing).

The program stays attached when the daemon exits (the kernel holds it),
like the endpoints; the next start replaces it and `port_guard: false`
removes it. A namespace that dies (a test's simulated host) cannot take its
program along, so every install and removal also detaches the programs of
namespaces that no longer exist (their cookies are never reused).

The policy is a few lines, assembled below instruction by instruction:
Debian installs no BPF compiler with its base system.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import logging
import os
import socket
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from vxvdex.daemon import netns
from vxvdex.guard import btf, squatters

SYS_BPF = 321                   # x86_64; see _syscall_number()
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 13, 15, 16
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND = 8, 9
BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS = 8, 1   # the GSO half of the send guard (gsoguard.py)
TYPES = (BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND, BPF_CGROUP_INET_EGRESS)
BPF_F_ALLOW_MULTI = 2
SO_NETNS_COOKIE = 71
HELPER_UID_GID, HELPER_NETNS_COOKIE = 15, 122
HELPER_CURRENT_TASK, HELPER_PROBE_READ_KERNEL = 35, 113
MAX_USERNS_LEVELS = 32
# struct bpf_sock_addr offsets
USER_IP4, USER_IP6, USER_PORT, PROTOCOL = 4, 8, 24, 36
NAME_PREFIX = "vxg"             # + the netns cookie in hex: one program per namespace


class BindGuardError(OSError):
    """The bind guard could not be loaded or attached."""


def _syscall_number() -> int:
    machine = os.uname().machine
    return {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}.get(machine, SYS_BPF)


_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, 128)
    ret = _libc.syscall(_syscall_number(), ctypes.c_int(cmd), buf, ctypes.c_uint(128))
    if ret < 0:
        err = ctypes.get_errno()
        raise BindGuardError(err, f"bpf({cmd}): {os.strerror(err)}")
    return int(ret)


# ---- the program ---------------------------------------------------------------

def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _imm64(dst: int, value: int) -> bytes:
    return (_insn(0x18, dst, imm=_s32(value & 0xFFFFFFFF)) + _insn(0, imm=_s32(value >> 32)))


def _s32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def _words(addr: bytes) -> list[int]:
    """The u32 values a BPF load of these network-order bytes gives."""
    return [struct.unpack("<I", addr[i:i + 4])[0] for i in range(0, len(addr), 4)]


def program(cookie: int, port: int, allowed_uids: list[int], v6: bool,
            own_group: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
            userns: tuple[int, int, int, int] | None = None) -> bytes:
    """The bind program: r0 = 1 allows the bind, 0 refuses it (EPERM).
    own_group: the group prefix whose last three bytes are a gid (None: no
    VLAN of this family, every bind of the others is refused). userns: the
    offsets of task_struct.cred, cred.user_ns, user_namespace.parent and
    .group (see _userns_walk; None: not checked)."""
    body = [
        _insn(0xbf, 6, 1),                                  # r6 = ctx
        _insn(0x85, imm=HELPER_NETNS_COOKIE),               # r0 = netns cookie (r1 = ctx)
        _imm64(1, cookie),
        ("jne_x_allow", 0, 1),                              # another namespace: allow
        _insn(0x61, 0, 6, PROTOCOL),
        ("jne32_allow", 0, socket.IPPROTO_UDP),
        _insn(0x61, 0, 6, USER_PORT),
        ("jne32_allow", 0, socket.htons(port)),
        _insn(0x85, imm=HELPER_UID_GID),                    # r0 = gid << 32 | uid
        _insn(0xbc, 1, 0),                                  # w1 = uid
        *[("jeq32_allow", 1, uid) for uid in sorted(set([0, *allowed_uids]))],
    ]
    if own_group is not None:
        words = _words(own_group.packed)
        tail = struct.unpack(">I", own_group.packed[-4:])[0] & 0xFF000000
        body += [
            _insn(0xbf, 8, 0), _insn(0x77, 8, imm=32),         # r8 = gid
            ("jgt_deny", 8, 0xFFFFFF),                         # no VLAN above 2^24
            _insn(0xbf, 7, 8),                                 # r7 = gid
            _insn(0x44, 8, imm=_s32(tail)),                    # w8 |= prefix byte
            _insn(0xdc, 8, imm=32),                            # to network order
        ]
        for i, word in enumerate(words[:-1]):                  # IPv6: the prefix words
            body += [_insn(0x61, 1, 6, USER_IP6 + 4 * i), ("jne32_deny", 1, word)]
        body += [_insn(0x61, 1, 6, USER_IP6 + 4 * (len(words) - 1) if v6 else USER_IP4),
                 ("jeq32_x_allow", 1, 8) if userns is None else ("jne32_x_deny", 1, 8)]
        if userns is not None:
            body += _userns_walk(*userns)
    body += [("deny",)]
    return _assemble(body)


def _read_kernel(size: int, base: int, off: int, slot: int) -> list:
    """bpf_probe_read_kernel(fp + slot, size, r[base] + off); a failure refuses."""
    return [_insn(0xbf, 1, 10), _insn(0x07, 1, imm=slot), _insn(0xb7, 2, imm=size),
            _insn(0xbf, 3, base), _insn(0x07, 3, imm=off), _insn(0x85, imm=HELPER_PROBE_READ_KERNEL),
            ("jne32_deny", 0, 0)]


def _userns_walk(cred: int, user_ns: int, parent: int, group: int) -> list:
    """The gid (r7) is the caller's own only if every user namespace between
    the caller and the initial one was made by that gid (user_namespace.group):
    `unshare -r` keeps one's gid, a newgidmap'ed subordinate gid does not
    (as af_vxvdex decides the VNI)."""
    body = [_insn(0x85, imm=HELPER_CURRENT_TASK), _insn(0xbf, 9, 0),
            *_read_kernel(8, 9, cred, -8), _insn(0x79, 9, 10, -8),
            *_read_kernel(8, 9, user_ns, -8), _insn(0x79, 9, 10, -8)]
    for _level in range(MAX_USERNS_LEVELS + 1):
        body += [*_read_kernel(8, 9, parent, -16), *_read_kernel(4, 9, group, -8),
                 _insn(0x79, 1, 10, -16), ("jeq_allow", 1, 0),     # the initial namespace: all checked
                 _insn(0x61, 2, 10, -8), ("jne32_x_deny", 2, 7),
                 _insn(0xbf, 9, 1)]
    return body


def userns_offsets() -> tuple[int, int, int, int] | None:
    """The kernel's offsets for _userns_walk, or None without BTF."""
    try:
        b = btf.load()
        return (b.offset("task_struct", "cred"), b.offset("cred", "user_ns"),
                b.offset("user_namespace", "parent"), b.offset("user_namespace", "group"))
    except btf.BtfError:
        return None


def _assemble(body: list) -> bytes:
    """Resolve the symbolic jumps: to `allow` (the last two insns) or `deny`."""
    sizes = [len(b) // 8 if isinstance(b, bytes) else 1 for b in body]
    total = sum(sizes) - 1 + 4                                 # ("deny",) becomes 2 + allow 2
    deny_at, allow_at = total - 4, total - 2
    out, pos = b"", 0
    codes = {"jne_x": 0x5d, "jne32": 0x56, "jeq32": 0x16, "jgt": 0x25, "jeq32_x": 0x1e, "jne32_x": 0x5e,
             "jeq": 0x15}
    for item, size in zip(body, sizes, strict=True):
        if isinstance(item, bytes):
            out += item
        elif item[0] == "deny":
            out += _insn(0xb7, 0, imm=0) + _insn(0x95) + _insn(0xb7, 0, imm=1) + _insn(0x95)
        else:
            kind, target = item[0].rsplit("_", 1)
            off = (allow_at if target == "allow" else deny_at) - pos - 1
            code = codes[kind]
            if kind.endswith("_x"):
                out += _insn(code, item[1], item[2], off)
            else:
                out += _insn(code, item[1], off=off, imm=_s32(item[2]))
        pos += size
    return out


# ---- loading and attaching -----------------------------------------------------

def netns_cookie() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")


def _load(code: bytes, attach_type: int, name: str, prog_type: int = BPF_PROG_TYPE_CGROUP_SOCK_ADDR) -> int:
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)

    def attr(level: int) -> bytes:
        return struct.pack("<IIQQIIQII16sII", prog_type, len(code) // 8,
                           ctypes.addressof(insns), ctypes.addressof(license_), level,
                           len(log) if level else 0,
                           ctypes.addressof(log) if level else 0, 0, 0, name.encode()[:15], 0, attach_type)
    try:
        return _bpf(BPF_PROG_LOAD, attr(0))  # no log: a long program's log would not fit (ENOSPC)
    except BindGuardError:
        pass
    try:  # again, for the verifier's reason
        return _bpf(BPF_PROG_LOAD, attr(1))
    except BindGuardError as err:
        raise BindGuardError(err.errno, f"the kernel refused the bind guard: {err.strerror}: "
                             f"{log.value.decode(errors='replace').strip()[-300:]}") from None


def _prog_name_and_id(fd: int) -> tuple[str, int]:
    info = ctypes.create_string_buffer(256)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, 256, ctypes.addressof(info)))
    prog_id = struct.unpack_from("<I", info.raw, 4)[0]
    return info.raw[64:80].split(b"\0")[0].decode(errors="replace"), prog_id


def _attached(cgroup_fd: int, attach_type: int) -> list[int]:
    ids = (ctypes.c_uint32 * 64)()
    attr = bytearray(struct.pack("<IIIIQI", cgroup_fd, attach_type, 0, 0, ctypes.addressof(ids), 64))
    buf = ctypes.create_string_buffer(bytes(attr), 128)
    ret = _libc.syscall(_syscall_number(), ctypes.c_int(BPF_PROG_QUERY), buf, ctypes.c_uint(128))
    if ret < 0:
        err = ctypes.get_errno()
        raise BindGuardError(err, f"cannot list the bind programs: {os.strerror(err)}")
    count = struct.unpack_from("<I", buf.raw, 24)[0]
    return list(ids[:count])


def _detach(cgroup_fd: int, attach_type: int, doomed: Callable[[str, int], bool]) -> None:
    """Detach every program (name, id) for which doomed() says so."""
    for prog_id in _attached(cgroup_fd, attach_type):
        try:
            fd = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<I", prog_id))
        except BindGuardError:
            continue  # detached meanwhile
        try:
            if doomed(_prog_name_and_id(fd)[0], prog_id):
                _bpf(BPF_PROG_DETACH, struct.pack("<IIII", cgroup_fd, fd, attach_type, 0))
        except BindGuardError:
            continue  # detached meanwhile (another daemon's sweep)
        finally:
            os.close(fd)


def _live_cookies() -> set[int]:
    """The cookies of every network namespace that still exists (one that
    has a process or is pinned under /run/netns)."""
    seen: set[int] = set()
    cookies: set[int] = set()
    paths = [f"/proc/{p}/ns/net" for p in os.listdir("/proc") if p.isdigit()]
    paths += [str(p) for p in netns.NETNS_RUN_DIR.glob("*")]
    for path in paths:
        try:
            ino = os.stat(path).st_ino
            if ino in seen:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # the process ended meanwhile
        seen.add(ino)
        try:
            cookies.add(netns.in_thread(functools.partial(_cookie_in, fd)))
        except OSError:
            continue
        finally:
            os.close(fd)
    return cookies


def _cookie_in(fd: int) -> int:
    netns.setns(fd)
    return netns_cookie()


def _stale(live: set[int], before: set[int]) -> Callable[[str, int], bool]:
    """Programs of dead namespaces: ours by name, attached before the scan of
    the live ones (a daemon that attaches during the scan is spared: netns
    cookies are not allocated in order, so they cannot tell old from new)."""
    def doomed(name: str, prog_id: int) -> bool:
        if prog_id not in before or not name.startswith(NAME_PREFIX):
            return False
        try:
            cookie = int(name[len(NAME_PREFIX):], 16)
        except ValueError:
            return False
        return cookie not in live
    return doomed


def _cgroup2_root() -> int:
    """An fd of the cgroup2 root (mounted for a moment if the host has no mount of it)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2" and fields[3] == "/":
            return os.open(fields[4], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    import subprocess
    with tempfile.TemporaryDirectory(prefix="vxvdex-cgroup2-") as where:
        subprocess.run(["mount", "-t", "cgroup2", "none", where], check=True, capture_output=True)
        try:
            return os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            subprocess.run(["umount", "-l", where], check=False, capture_output=True)


def _own_group(prefix: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
               v6: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if prefix is not None:
        return prefix
    return ipaddress.ip_address("ff05:56de::1" if v6 else "239.0.0.1")


def install(port: int, allowed_uids: list[int], ip_version: int,
            prefix: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> None:
    """Attach this namespace's bind guard (the new one first, then the old one goes)."""
    cookie = netns_cookie()
    name = f"{NAME_PREFIX}{cookie:x}"[:15]
    group = _own_group(prefix, ip_version == 6)
    from vxvdex.guard import gsoguard
    userns = userns_offsets()
    cgroup = _cgroup2_root()
    try:
        for attach_type, v6 in ((BPF_CGROUP_INET4_BIND, False), (BPF_CGROUP_INET6_BIND, True)):
            own = group if (ip_version == 6) == v6 else None
            try:
                fd = _load(program(cookie, port, allowed_uids, v6, own, userns), attach_type, name)
            except BindGuardError as err:  # kernel lockdown refuses reading kernel memory
                if userns is None:
                    raise
                logging.getLogger("vxvdexd").warning("%s; the bind guard cannot tell subordinate gids "
                                                     "(/etc/subgid) from held ones", err)
                userns = None
                fd = _load(program(cookie, port, allowed_uids, v6, own), attach_type, name)
            _attach(cgroup, fd, attach_type, name)
        _attach(cgroup, _load(gsoguard.program(allowed_uids), BPF_CGROUP_INET_EGRESS, name,
                              BPF_PROG_TYPE_CGROUP_SKB), BPF_CGROUP_INET_EGRESS, name)
        _sweep(cgroup)
    finally:
        os.close(cgroup)
    try:  # now that no new one can bind: those bound before
        squatters.end(port, allowed_uids, _holds_group(group))
    except OSError as err:
        logging.getLogger("vxvdexd").warning("cannot list the sockets bound to UDP port %d before the "
                                             "port guard: %s", port, err.strerror)


def _holds_group(base: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Callable[[int, str], bool]:
    """Whether an address is the group of a gid that uid holds (what the bind program allows)."""
    def check(uid: int, address: str) -> bool:
        packed = ipaddress.ip_address(address).packed
        if len(packed) != len(base.packed) or packed[:-3] != base.packed[:-3]:
            return False
        return squatters.holds(uid, int.from_bytes(packed[-3:], "big"))
    return check


def _attach(cgroup: int, fd: int, attach_type: int, name: str) -> None:
    """Attach the loaded program fd (then this namespace's older one goes); fd is closed."""
    try:
        _bpf(BPF_PROG_ATTACH, struct.pack("<IIII", cgroup, fd, attach_type, BPF_F_ALLOW_MULTI))
        _detach(cgroup, attach_type, _older(name, _prog_name_and_id(fd)[1]))
    finally:
        os.close(fd)


def _older(name: str, new_id: int) -> Callable[[str, int], bool]:
    """The programs this namespace had before new_id."""
    return lambda n, i: n == name and i != new_id


def _sweep(cgroup: int) -> None:
    before = {i for attach_type in TYPES for i in _attached(cgroup, attach_type)}
    doomed = _stale(_live_cookies(), before)
    for attach_type in TYPES:
        _detach(cgroup, attach_type, doomed)


def remove() -> None:
    """Detach this namespace's bind guard, if attached."""
    name = f"{NAME_PREFIX}{netns_cookie():x}"[:15]
    cgroup = _cgroup2_root()
    try:
        for attach_type in TYPES:
            _detach(cgroup, attach_type, lambda n, _i: n == name)
        _sweep(cgroup)
    finally:
        os.close(cgroup)
