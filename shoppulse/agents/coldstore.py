"""The worker's cold store: the engines' `ColdStore` (streams/cold.py) in one local RocksDB.

The dedup ids and the visitors and customers seen live here instead of in Python memory. It
is a cache of the changelog, which stays the source of truth: the database is emptied when the
worker starts, and each engine refills its spaces while it restores. So it needs no write-ahead
log, and a crash loses nothing that a restore does not rebuild.

Keys: `<space>\\0<key>` (a space's name never holds NUL), so a space and every space under a
prefix are key ranges, dropped with one range delete.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from ..errors import ShoppulseError

WRITE_BUFFER_BYTES = 16 << 20  # memory the store may hold before a flush to disk: x 2 buffers
BLOCK_CACHE_BYTES = 32 << 20


def _successor(prefix: bytes) -> bytes:
    """The smallest key after every key that starts with `prefix` (a non-empty text prefix)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class RocksStore:
    """A `ColdStore` in one rocksdict database, opened empty."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._open(path).close()  # fails while another worker holds it: wipe only then
        shutil.rmtree(path, ignore_errors=True)
        self.db = self._open(path)
        write = WriteOptions()
        write.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method
        self.db.set_write_options(write)
        self.path = path

    @staticmethod
    def _open(path: Path) -> Rdict:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        try:
            return Rdict(str(path), options)
        except Exception as exc:  # rocksdict raises a bare Exception, e.g. for a held lock
            raise ShoppulseError(
                f"cannot open the cold-state store {path}: {exc}. Is another worker using the "
                "data dir? Give each worker its own `data_dir`."
            ) from None

    def get(self, space: str, key: bytes) -> bytes | None:
        return self.db.get(space.encode() + b"\0" + key)

    def put_many(self, space: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        prefix = space.encode() + b"\0"
        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            batch.put(prefix + key, value)
        self.db.write(batch)

    def drop(self, space: str) -> None:
        prefix = space.encode()
        self.db.delete_range(prefix + b"\0", prefix + b"\1")

    def drop_under(self, prefix: str) -> None:
        start = prefix.encode()
        self.db.delete_range(start, _successor(start))

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
