"""The Faust worker shell: the app, the source and merge agents, batching and acks,
rebalances and consumer lag. It moves records between Kafka and the core (`streams/`)
and hands results to the outputs (`outputs/`)."""
