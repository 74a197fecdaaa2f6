"""The local copy of the changelog partitions this worker has held: every row their committed
checkpoints wrote, in one RocksDB under the data dir, with the changelog offset each partition's
copy reflects (what Kafka Streams keeps in its `.checkpoint` file, kept here in the store itself).

A task writes its rows here only after its transaction has committed, in one atomic batch
together with the new offset (the idea of KIP-892's transactional state stores). So whatever
way the worker stopped, even `kill -9` between the commit and this write, each copy matches a
committed checkpoint, and opening the partition reads only the changelog's tail from that
offset (agents/restore.py). Rows another owner committed meanwhile are in that tail too.

A copy is not trusted, and the partition is restored in full, when its offset is outside the
changelog's offsets now (the topic was deleted and created again, or records were deleted), or
when it was last written longer ago than the changelog keeps tombstones
(`delete.retention.ms`, set on the changelog topics by kafka/admin.py): compaction may have
dropped a deletion the tail would otherwise carry.

Keys: `r\\0<topic>\\0<partition>\\0<changelog key>` for rows, `o\\0<topic>\\0<partition>` for the
offset and the wall-clock time it was written at.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

from aiokafka import TopicPartition
from rocksdict import Options, Rdict, ReadOptions, WriteBatch

from ..errors import ShoppulseError
from ..kafka.admin import TOMBSTONE_RETENTION_MS

_OFFSET = struct.Struct(">qq")  # (changelog offset after the rows held, written at: wall-clock ms)


def _successor(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class LocalChangelogs:
    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        try:
            self.db = Rdict(str(path), options)
        except Exception as exc:  # rocksdict raises a bare Exception, e.g. for a held lock
            raise ShoppulseError(
                f"cannot open the local state {path}: {exc}. Is another worker using the data dir? "
                "Give each worker its own `data_dir`."
            ) from None

    @staticmethod
    def _rows_prefix(tp: TopicPartition) -> bytes:
        return f"r\0{tp.topic}\0{tp.partition}\0".encode()

    @staticmethod
    def _offset_key(tp: TopicPartition) -> bytes:
        return f"o\0{tp.topic}\0{tp.partition}".encode()

    def offset(self, tp: TopicPartition) -> tuple[int, int] | None:
        """(changelog offset the copy reflects, wall-clock ms it was written at); None: no copy."""
        value = self.db.get(self._offset_key(tp))
        if value is None:
            return None
        offset, written_ms = _OFFSET.unpack(value)
        return offset, written_ms

    def trusted_offset(self, tp: TopicPartition, start: int, end: int, now_ms: int) -> int | None:
        """The offset to read the changelog's tail from, when the copy can be trusted (the
        changelog now spans `start`..`end`); None: restore in full."""
        held = self.offset(tp)
        if held is None:
            return None
        offset, written_ms = held
        if not start <= offset <= end or now_ms - written_ms >= TOMBSTONE_RETENTION_MS:
            return None
        return offset

    def rows(self, tp: TopicPartition) -> Iterator[tuple[bytes, bytes]]:
        """Every row of the copy, as (changelog key, value)."""
        prefix = self._rows_prefix(tp)
        skip = len(prefix)
        # The bound ends the iteration in RocksDB: no prefix test per row (a million rows per
        # open). RocksDB keeps a pointer to it: `bounds` must live as long as the iteration, in
        # this generator's frame (a dropped bound let rows of other partitions through).
        bounds = ReadOptions()
        bounds.set_iterate_upper_bound(_successor(prefix))
        items = cast(Iterator[tuple[bytes, bytes]], self.db.items(from_key=prefix, read_opt=bounds))  # raw mode
        for key, value in items:
            yield key[skip:], value

    def write(self, tp: TopicPartition, rows: Iterable[tuple[bytes, bytes | None]], offset: int, now_ms: int) -> int:
        """Rows of the changelog (value None: deleted) up to `offset`, in one atomic batch with
        the offset. Returns how many rows were written."""
        prefix = self._rows_prefix(tp)
        batch = WriteBatch(raw_mode=True)
        n = 0
        for key, value in rows:
            if value is None:
                batch.delete(prefix + key)
            else:
                batch.put(prefix + key, value)
            n += 1
        batch.put(self._offset_key(tp), _OFFSET.pack(offset, now_ms))
        self.db.write(batch)
        return n

    def wipe(self, tp: TopicPartition) -> None:
        """Forget the copy of one partition (before a full restore)."""
        prefix = self._rows_prefix(tp)
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(prefix, _successor(prefix))
        batch.delete(self._offset_key(tp))
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()
