"""The learning table: learn, expire, leave, collide (PROTOCOL.md 4)."""

from vxvdex.dataplane.mactable import MacTable

A = ("192.0.2.1", 40000)
B = ("192.0.2.2", 40001)


def mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, i >> 8, i & 0xFF])


def test_learn_and_lookup() -> None:
    t = MacTable(1024, 128)
    t.learn(mac(1), A, 10.0)
    assert t.lookup(mac(1), 11.0) == A
    assert t.lookup(mac(2), 11.0) is None


def test_relearn_moves_the_entry() -> None:
    t = MacTable(1024, 128)
    t.learn(mac(1), A, 10.0)
    t.learn(mac(1), B, 12.0)
    assert t.lookup(mac(1), 12.0) == B


def test_group_source_macs_are_never_learned() -> None:
    t = MacTable(1024, 128)
    t.learn(b"\x01\x00\x5e\x00\x00\x01", A, 0.0)
    t.learn(b"\xff" * 6, A, 0.0)
    assert list(t.entries(0.0)) == []


def test_expiry_after_128_seconds_without_refresh() -> None:
    t = MacTable(1024, 128)
    t.learn(mac(1), A, 0.0)
    assert t.lookup(mac(1), 128.0) == A
    assert t.lookup(mac(1), 128.5) is None
    t.learn(mac(1), A, 100.0)  # a refresh restarts the clock
    assert t.lookup(mac(1), 200.0) == A


def macs_in_distinct_buckets(t: MacTable, n: int) -> list[bytes]:
    """n MACs that share no bucket in this process: the index comes from the
    randomized hash, so fixed MACs collide under some PYTHONHASHSEED values
    and a collision evicts (tested on its own below)."""
    chosen: dict[int, bytes] = {}
    for i in range(4 * len(t.buckets)):
        chosen.setdefault(hash(mac(i)) & t.mask, mac(i))
        if len(chosen) == n:
            return list(chosen.values())
    raise AssertionError(f"no {n} MACs in distinct buckets")


def test_leave_forgets_every_entry_of_that_sender_only() -> None:
    t = MacTable(1024, 128)
    *of_a, of_b = macs_in_distinct_buckets(t, 11)
    for m in of_a:
        t.learn(m, A, 0.0)
    t.learn(of_b, B, 0.0)
    assert t.forget(A) == 10
    assert all(t.lookup(m, 1.0) is None for m in of_a)
    assert t.lookup(of_b, 1.0) == B
    assert t.forget(("192.0.2.9", 1)) == 0


def test_size_is_rounded_to_a_power_of_two_and_bounded() -> None:
    t = MacTable(1000, 128)
    assert len(t.buckets) == 1024
    for i in range(50000):
        t.learn(mac(i), A, 0.0)
    assert len(t.buckets) == 1024
    assert sum(1 for _ in t.entries(0.0)) <= 1024


def test_collision_replaces_and_the_loser_goes_to_the_group() -> None:
    t = MacTable(1, 128)  # one bucket: every MAC collides
    t.learn(mac(1), A, 0.0)
    t.learn(mac(2), B, 0.0)
    assert t.lookup(mac(2), 0.0) == B
    assert t.lookup(mac(1), 0.0) is None
    assert t.forget(A) == 0 and t.forget(B) == 1
