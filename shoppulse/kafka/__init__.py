"""Kafka plumbing: the admin client (topics, broker diagnosis), client options from settings,
the producer's partitioner, and the local broker launcher (`shoppulse kafka`)."""
