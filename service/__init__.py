"""The HTTP API: ingest to Kafka, the read side, the dashboard (docs/contract.md, "HTTP API")."""
