"""The tools around the worker: traffic generator, data file replay and their sinks, the results
tail, the demo and its live view, and the broker jars fetch."""
