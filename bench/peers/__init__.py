"""The peers bench/throughput.py measures the shoppulse worker against (issue 12):

- `faust_empty.py`: (b) an empty faust-streaming agent on the same source topics;
- `quix_app.py`: (c) a Quix Streams 3.x app doing a smaller job (clickstream counts per event
  type in 1 min / 5 min / 1 h tumbling windows, one per-session state update);
- `measure.py`: runs one as a subprocess and measures it as the worker is measured (time until
  the group's committed offsets reach the log end, peak RSS, CPU seconds), and the bytes any
  variant wrote to Kafka (log segment sizes on the broker's disk, before and after).

Quix Streams is an optional dependency: `pip install -e '.[bench]'`.
"""
