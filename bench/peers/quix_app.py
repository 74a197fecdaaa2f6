"""Peer (c) of bench/throughput.py: a Quix Streams 3.x app doing a smaller job than the worker.

    .venv/bin/python bench/peers/quix_app.py --broker HOST:PORT --group GROUP \
        --clickstream TOPIC --other T2,T3 --progress FILE --state-dir DIR

The job, on the clickstream topic (key: visitor_id):
- one per-session state update per event: a count per `session_id` in the visitor's state
  (RocksDB, with its changelog topic, as Quix keeps state);
- counts per `event_type` in 1 min, 5 min and 1 h tumbling windows on event time (`ts`):
  `group_by("event_type")` (a repartition topic), then three window branches whose final
  counts go to one output topic. Grace: 30 s, the worker's default `grace_seconds`; records
  later than that are counted (`late` in the progress file) instead of logged one by one.
The other source topics are subscribed too (so that it reads the same N records as the other
variants) and only counted. Quix's defaults otherwise: at-least-once, a checkpoint (state,
changelogs, offsets) every 5 s. State lives in --state-dir; it runs until SIGTERM/SIGINT.
Counted as processed: each input record once Quix has run it through every step
(`on_message_processed`), never the repartitioned copies.
"""

from __future__ import annotations

import argparse
import threading
from datetime import datetime, timedelta
from typing import Any

from _progress import Progress
from quixstreams import Application, State
from quixstreams.models import TimestampType

WINDOWS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


def event_time(value: Any, _headers: Any, timestamp: int, _type: TimestampType) -> int:
    """Epoch ms from the event's `ts` (epoch ms or RFC 3339), else the record's timestamp."""
    ts = value.get("ts") if isinstance(value, dict) else None
    if isinstance(ts, int):
        return ts
    if isinstance(ts, str):
        try:
            return int(datetime.fromisoformat(ts).timestamp() * 1000)
        except ValueError:
            pass
    return timestamp


def touch_session(value: dict, state: State) -> None:
    key = f"session:{value.get('session_id')}"
    state.set(key, state.get(key, 0) + 1)


def build(args: argparse.Namespace, progress: Progress) -> Application:
    def late(*_args: Any, **_kwargs: Any) -> bool:
        progress.extra["late"] = progress.extra.get("late", 0) + 1
        return False  # do not log it

    inputs = {args.clickstream, *filter(None, args.other.split(","))}

    def processed(topic: str, _partition: int, _offset: int) -> None:
        if topic in inputs:
            progress.add()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
        on_message_processed=processed,
    )
    clicks = app.dataframe(app.topic(args.clickstream, value_deserializer="json", timestamp_extractor=event_time))
    clicks = clicks.update(touch_session, stateful=True)
    by_type = clicks.group_by("event_type")
    output = app.topic(f"{args.group}-window-counts", value_serializer="json", key_serializer="json")
    for name, length in WINDOWS.items():
        (
            by_type.tumbling_window(length, grace_ms=args.grace_ms, name=f"count-{name}", on_late=late)
            .count()
            .final()
            .apply(lambda window, name=name: {"window": name, **window})
            .to_topic(output)
        )
    for topic in inputs - {args.clickstream}:
        app.dataframe(app.topic(topic, value_deserializer="bytes"))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True, metavar="HOST:PORT")
    parser.add_argument("--group", required=True, help="consumer group (also names Quix's internal topics)")
    parser.add_argument("--clickstream", required=True, metavar="TOPIC")
    parser.add_argument("--other", default="", help="comma-separated other source topics, only counted")
    parser.add_argument("--progress", required=True, metavar="FILE")
    parser.add_argument("--state-dir", required=True, metavar="DIR")
    parser.add_argument("--grace-ms", type=int, default=30_000, help="window grace; default the worker's 30 s")
    args = parser.parse_args()
    progress = Progress(args.progress)
    progress.write()
    app = build(args, progress)
    done = threading.Event()

    def report() -> None:  # Quix's loop is synchronous: a thread writes the progress file
        while not done.wait(progress.interval):
            progress.write()

    threading.Thread(target=report, daemon=True).start()
    try:
        app.run()
    finally:
        done.set()
        progress.write()


if __name__ == "__main__":
    main()
