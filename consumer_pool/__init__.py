"""The consumer pool: a supervisor and worker processes sharing one Kafka consumer group.

Each worker consumes a batch, decodes it with the shared model, writes it to a sink and
commits offsets only after the write succeeded (at-least-once into a deduplicating store).
"""
