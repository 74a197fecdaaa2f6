"""State keys: one typed codec for the keys of the engines' and the merger's state tables.

A source engine's state, one row per key (values: see the engines' `dump_key`):

    meta                              MetaKey       watermark, progress, next dedup group
    w|<family>|<size_ms>|<start_ms>   WindowKey     the Measures of one open window, as of its last fold
    wd|<family>|<size_ms>|<start_ms>  WindowDeltaKey  what that window received since (merged on restore)
    ids|<group>                       IdsKey        the event ids of one batch (dedup horizon)
    s|<visitor_id> <session_id>       SessionKey    one open session
    v|<visitor_id>                    VisitorKey    a visitor seen before
    c|<customer_id>                   CustomerKey   a customer who ordered before
    t|<ticket_id>                     TicketKey     one ticket

A worker keeps every partition's rows of one stream in one table, as `<partition>|<key>`
(`table_key`, `state_rows`). The merge stage's state, one table:

    w|<family>|<size_ms>|<start_ms>|<partition>   PartialKey    a partition's last snapshot of a window
    p|<family>|<partition>                        ProgressKey   a partition's progress
    e|<family>                                    EmittedKey    progress already emitted
    f|<family>|<size_ms>|<start_ms>               FinalKey      final measures kept for cross KPIs
    s|<family>|<partition>                        StepsKey      a partition's point-in-time state steps

Text fields (ids, families) escape `%`, `|` and space as `%25`, `%7C`, `%20`, so any id
round-trips. An id without those three characters is written as before this codec, and a key
written before it reads back the same unless its id holds `%25`, `%7C` or `%20`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import msgspec


class MetaKey(msgspec.Struct, frozen=True):
    pass


class WindowKey(msgspec.Struct, frozen=True):
    family: str
    size_ms: int
    start_ms: int


class WindowDeltaKey(msgspec.Struct, frozen=True):
    family: str
    size_ms: int
    start_ms: int


class IdsKey(msgspec.Struct, frozen=True):
    group: int


class SessionKey(msgspec.Struct, frozen=True, order=True):
    """A session id reused by two visitors is two sessions. Ordered: the expiry heap breaks ties by key."""

    visitor_id: str
    session_id: str


class VisitorKey(msgspec.Struct, frozen=True):
    visitor_id: str


class CustomerKey(msgspec.Struct, frozen=True):
    customer_id: str


class TicketKey(msgspec.Struct, frozen=True):
    ticket_id: str


StateKey = MetaKey | WindowKey | WindowDeltaKey | IdsKey | SessionKey | VisitorKey | CustomerKey | TicketKey


class PartialKey(msgspec.Struct, frozen=True):
    family: str
    size_ms: int
    start_ms: int
    partition: int


class ProgressKey(msgspec.Struct, frozen=True):
    family: str
    partition: int


class EmittedKey(msgspec.Struct, frozen=True):
    family: str


class FinalKey(msgspec.Struct, frozen=True):
    family: str
    size_ms: int
    start_ms: int


class StepsKey(msgspec.Struct, frozen=True):
    family: str
    partition: int


MergeKey = PartialKey | ProgressKey | EmittedKey | FinalKey | StepsKey

META = MetaKey()

_ESCAPES = str.maketrans({"%": "%25", "|": "%7C", " ": "%20"})
_UNESCAPES = {"%25": "%", "%7C": "|", "%20": " "}
_ESCAPED = re.compile("%(?:25|7C|20)")


def _text(value: str) -> str:
    return value.translate(_ESCAPES)


def _untext(field: str) -> str:
    return _ESCAPED.sub(lambda match: _UNESCAPES[match.group()], field) if "%" in field else field


def encode_key(key: StateKey | MergeKey) -> str:
    match key:
        case MetaKey():
            return "meta"
        case WindowKey(family, size_ms, start_ms):
            return f"w|{_text(family)}|{size_ms}|{start_ms}"
        case WindowDeltaKey(family, size_ms, start_ms):
            return f"wd|{_text(family)}|{size_ms}|{start_ms}"
        case IdsKey(group):
            return f"ids|{group}"
        case SessionKey(visitor_id, session_id):
            return f"s|{_text(visitor_id)} {_text(session_id)}"
        case VisitorKey(visitor_id):
            return f"v|{_text(visitor_id)}"
        case CustomerKey(customer_id):
            return f"c|{_text(customer_id)}"
        case TicketKey(ticket_id):
            return f"t|{_text(ticket_id)}"
        case PartialKey(family, size_ms, start_ms, partition):
            return f"w|{_text(family)}|{size_ms}|{start_ms}|{partition}"
        case ProgressKey(family, partition):
            return f"p|{_text(family)}|{partition}"
        case EmittedKey(family):
            return f"e|{_text(family)}"
        case FinalKey(family, size_ms, start_ms):
            return f"f|{_text(family)}|{size_ms}|{start_ms}"
        case StepsKey(family, partition):
            return f"s|{_text(family)}|{partition}"
    raise TypeError(f"not a state key: {key!r}")


def decode_key(text: str) -> StateKey:
    """A source engine's state key (the inverse of `encode_key`). Raises ValueError for other text."""
    key = _decode_state_key(text)
    if key is None:
        raise ValueError(f"not a source state key: {text!r}")
    return key


def _decode_state_key(text: str) -> StateKey | None:
    kind, _, rest = text.partition("|")
    try:
        # The most numerous kinds first (a restore decodes every row).
        if kind == "s":
            visitor_id, session_id = rest.split(" ")
            return SessionKey(_untext(visitor_id), _untext(session_id))
        if kind == "v":
            return VisitorKey(_untext(rest))
        if kind == "meta" and not rest:
            return META
        if kind == "w":
            family, size_ms, start_ms = rest.split("|")
            return WindowKey(_untext(family), int(size_ms), int(start_ms))
        if kind == "wd":
            family, size_ms, start_ms = rest.split("|")
            return WindowDeltaKey(_untext(family), int(size_ms), int(start_ms))
        if kind == "ids":
            return IdsKey(int(rest))
        if kind == "c":
            return CustomerKey(_untext(rest))
        if kind == "t":
            return TicketKey(_untext(rest))
    except ValueError:
        pass
    return None


def decode_merge_key(text: str) -> MergeKey:
    """A merge-stage state key (the inverse of `encode_key`). Raises ValueError for other text."""
    key = _decode_merge_key(text)
    if key is None:
        raise ValueError(f"not a merge state key: {text!r}")
    return key


def _decode_merge_key(text: str) -> MergeKey | None:
    kind, *fields = text.split("|")
    try:
        if kind == "w" and len(fields) == 4:
            return PartialKey(_untext(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]))
        if kind == "p" and len(fields) == 2:
            return ProgressKey(_untext(fields[0]), int(fields[1]))
        if kind == "e" and len(fields) == 1:
            return EmittedKey(_untext(fields[0]))
        if kind == "f" and len(fields) == 3:
            return FinalKey(_untext(fields[0]), int(fields[1]), int(fields[2]))
        if kind == "s" and len(fields) == 2:
            return StepsKey(_untext(fields[0]), int(fields[1]))
    except ValueError:
        pass
    return None


def table_key(partition: int, key: str) -> bytes:
    """The worker's table key of an encoded state key of `partition`."""
    return f"{partition}|{key}".encode()


def state_rows(partition: int, rows: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[str, bytes]]:
    """(encoded state key, value) of the table rows of `partition` among `rows`: one prefix test
    per row (a restore reads a million)."""
    prefix = b"%d|" % partition
    skip = len(prefix)
    return ((raw[skip:].decode(), value) for raw, value in rows if raw.startswith(prefix))
