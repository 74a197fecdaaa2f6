"""The producer's partitioner, named once: tests and benchmarks place keyed records exactly
where `AIOKafkaProducer` (and Kafka's Java client) would."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    """aiokafka's DefaultPartitioner for a keyed record: murmur2, sign bit cleared, modulo."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
