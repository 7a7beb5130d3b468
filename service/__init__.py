"""Sensor ingest HTTP API: validates readings and produces them to Kafka."""
