"""Ingest: POST /sensor and /sensor/batch, their body decoding, credentials, rate limit and the Kafka producer."""
