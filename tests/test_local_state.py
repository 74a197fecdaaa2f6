"""The local copy of the changelogs (agents/localstate.py): which copies are trusted, and that a
write is one atomic batch with its offset."""

from __future__ import annotations

from aiokafka import TopicPartition

from shoppulse.agents.localstate import LocalChangelogs
from shoppulse.kafka.admin import TOMBSTONE_RETENTION_MS

TP = TopicPartition("app-orders-state-changelog", 2)
NOW = 1_800_000_000_000


def test_a_copy_is_trusted_only_inside_the_changelog_and_younger_than_its_tombstones(tmp_path):
    local = LocalChangelogs(tmp_path / "local")
    assert local.trusted_offset(TP, 0, 100, NOW) is None, "no copy: restore in full"
    local.write(TP, [(b"2|a", b"1")], 40, NOW)
    assert local.trusted_offset(TP, 0, 100, NOW) == 40
    assert local.trusted_offset(TP, 0, 40, NOW) == 40, "nothing written since"
    assert local.trusted_offset(TP, 0, 39, NOW) is None, "ahead of the changelog: the topic was created again"
    assert local.trusted_offset(TP, 41, 100, NOW) is None, "records after it were deleted"
    assert local.trusted_offset(TP, 0, 100, NOW + TOMBSTONE_RETENTION_MS - 1) == 40
    assert local.trusted_offset(TP, 0, 100, NOW + TOMBSTONE_RETENTION_MS) is None, "a tombstone may be gone"
    local.close()


def test_rows_offsets_and_wipes_are_per_partition_and_survive_a_reopen(tmp_path):
    other = TopicPartition(TP.topic, 22)  # its number starts with partition 2's: the prefixes must not overlap
    local = LocalChangelogs(tmp_path / "local")
    local.write(TP, [(b"2|a", b"1"), (b"2|b", b"2")], 10, NOW)
    local.write(other, [(b"22|a", b"x")], 5, NOW)
    local.write(TP, [(b"2|a", None), (b"2|c", b"3")], 14, NOW + 1)
    local.close()
    local = LocalChangelogs(tmp_path / "local")
    assert dict(local.rows(TP)) == {b"2|b": b"2", b"2|c": b"3"}
    assert dict(local.rows(other)) == {b"22|a": b"x"}
    assert local.offset(TP) == (14, NOW + 1) and local.offset(other) == (5, NOW)
    local.wipe(TP)
    assert list(local.rows(TP)) == [] and local.offset(TP) is None
    assert dict(local.rows(other)) == {b"22|a": b"x"}
    local.close()


def test_a_large_copy_reads_back_exactly_its_own_rows_among_its_neighbours(tmp_path):
    """Rows are read with an upper bound on RocksDB's iterator: at scale (many flushed files,
    freed memory reused) a bound that did not live as long as the iteration let other
    partitions' rows through and dropped some of the partition's own."""
    local = LocalChangelogs(tmp_path / "local")
    tps = [TopicPartition(TP.topic, p) for p in (1, 2, 3, 12, 22)] + [TopicPartition("app-a-state-changelog", 2)]
    expected = {}
    for n, tp in enumerate(tps):
        rows = [(b"%d|k%06d" % (tp.partition, i), b"%d" % n) for i in range(40_000)]
        for start in range(0, len(rows), 5000):
            local.write(tp, rows[start : start + 5000], start + 5000, NOW)
        expected[tp] = dict(rows)
    for tp in tps:
        got = {}
        for key, value in local.rows(tp):
            got[key] = value
            _ = [bytes(100) for _ in range(3)]  # allocations between rows, as a restore makes
        assert got == expected[tp], tp
    local.close()
