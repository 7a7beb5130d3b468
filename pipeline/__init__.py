"""The pipeline's shared core: the reading, the Kafka record, topics, client configuration,
settings and backoff. Both `service` (the API) and `consumer_pool` import it; it imports
neither. The contract it implements is docs/contract.md."""
