"""The worker shell: the Faust app, the batch data plane (fetches, partition tasks,
transactional checkpoints, rebalances, consumer lag), the cold-state store and the stream
clocks' transport. It moves records between Kafka and the core (`streams/`) and hands
results to the outputs (`outputs/`)."""
