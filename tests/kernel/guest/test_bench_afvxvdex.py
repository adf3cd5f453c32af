"""Benchmark (runs only when selected, e.g. `tests/kernel/run --kernel 6.1 --
-k bench -s`, or through bench/afvxvdex): the Python endpoint over
AF_VXVDEX against the same endpoint over plain UDP sockets, in one guest.

Both pairs run alike: unprivileged (user vxkt1000, gid 1000), in the guest's
initial namespace, each endpoint's tap moved into its leaf; only the
transport differs (`--transport vxvdex`, port 14789, and `--transport udp`,
port 14790, so that the two VLANs never meet). TCP throughput between the
leaves of a pair with iperf3, ROUNDS rounds of SECONDS s, the transports
alternating; the median, and the endpoints' CPU (both ends, % of one core).
qemu TCG makes absolute figures small: the ratio is what counts (target:
AF_VXVDEX >= 0.9 x UDP).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import vxkguest as vx
import vxkplug as kp

ROUNDS = 3
SECONDS = 3
TARGET = 0.9
IPERF_PORT = "5201"
PAIRS = {  # transport: (extra arguments, URL, leaves' host numbers in 203.0.113.0/24 from)
    "AF_VXVDEX": (("--transport", "vxvdex"), "vxvde:///grp=1000", 1),
    "UDP": (("--transport", "udp"), "vxvde:///grp=1000/port=14790", 11),
}


@pytest.fixture(autouse=True)
def _only_when_selected(request: pytest.FixtureRequest) -> None:
    keyword = request.config.getoption("keyword") or ""
    if "bench" not in keyword or "not bench" in keyword:
        pytest.skip("benchmark: select it with -k bench")
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed")


@pytest.fixture
def bench_world(lan: vx.Lan) -> Iterator[kp.World]:
    w = kp.World("vxkb-")
    try:
        with kp.guest_users((1000,)) as users:
            specs = []
            for kind, (extra, url, first) in PAIRS.items():
                for end in (1, 2):
                    specs.append(dict(name=f"{kind[:1].lower()}{end}", kind="vxvdex-plug", url=url,
                                      vlan=1000, addr=f"203.0.113.{first + end - 1}",
                                      mac=f"02:98:00:00:00:{len(specs) + 1:02x}", user=users[1000],
                                      extra=extra))
            w.leaves_started(specs)
            yield w
    finally:
        w.close()


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _iperf(w: kp.World, client: kp.Leaf, server: kp.Leaf) -> tuple[float, float]:
    """(Mbit/s received, CPU % of both endpoints) of one TCP run."""
    pids = [client.proc.pid, server.proc.pid]
    cpu0, t0 = _cpu_seconds(pids), time.monotonic()
    r = subprocess.run(kp.in_ns(client.ns, ["iperf3", "-c", server.addr, "-p", IPERF_PORT, "-t", str(SECONDS),
                                            "-J"]), capture_output=True, text=True, timeout=SECONDS + 60)
    cpu = (_cpu_seconds(pids) - cpu0) / (time.monotonic() - t0) * 100
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6, cpu


def test_bench_afvxvdex(bench_world: kp.World) -> None:
    w = bench_world
    ends = {kind: (w.leaves[f"{kind[:1].lower()}1"], w.leaves[f"{kind[:1].lower()}2"]) for kind in PAIRS}
    for kind, (a, b) in ends.items():
        servers = w.spawn(f"iperf-{kind}", kp.in_ns(b.ns, ["iperf3", "-s", "-p", IPERF_PORT, "--forceflush"]))
        kp.wait_for(lambda servers=servers: "listening" in servers.text(), what="iperf3 -s")
        assert all(kp.ping_all([(a, b.addr)]).values()), f"{kind}: no ping"
        st = kp.wait_for(lambda a=a: a.status and a.status.exists() and a.read_status(), what="status")
        assert st["transport"] == kind

    runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in PAIRS}
    for r in range(ROUNDS):
        for kind in (list(PAIRS) if r % 2 == 0 else list(PAIRS)[::-1]):
            runs[kind].append(_iperf(w, *ends[kind]))

    offload = {kind: ends[kind][0].read_status() for kind in PAIRS}
    med = {kind: statistics.median(m for m, _ in runs[kind]) for kind in PAIRS}
    ratio = med["AF_VXVDEX"] / med["UDP"]
    lines = [
        "",
        f"vxvdex-plug, TCP over the overlay (iperf3, {ROUNDS} rounds x {SECONDS} s, median), "
        f"kernel {platform.release()}, qemu TCG guest",
        "",
        "| transport | Mbit/s per round | median Mbit/s | endpoints' CPU % (median) | GSO | GRO |",
        "|---|---|---|---|---|---|",
    ]
    for kind in PAIRS:
        rounds = ", ".join(f"{m:.0f}" for m, _ in runs[kind])
        cpu = statistics.median(c for _, c in runs[kind])
        lines.append(f"| {kind} | {rounds} | {med[kind]:.0f} | {cpu:.0f} | "
                     f"{offload[kind]['gso']} | {offload[kind]['gro']} |")
    verdict = "met" if ratio >= TARGET else "NOT met"
    lines += ["", f"AF_VXVDEX / UDP = {ratio:.2f} (target >= {TARGET}: {verdict})", ""]
    print("\n".join(lines))
    print("BENCH-JSON: " + json.dumps({"kernel": platform.release(), "rounds": ROUNDS, "seconds": SECONDS,
                                       "runs": runs, "median_mbps": med, "ratio": ratio}))
    for kind in PAIRS:
        assert med[kind] > 0, kind
        st = ends[kind][0].read_status()
        assert st["counters"]["tx_errors"] == 0, (kind, st["counters"])
