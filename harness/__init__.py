"""Test harness for the pipeline, kept apart from the tests (like `falcon.testing`).

The tests, the Locust acceptance gate and the benchmarks all start real processes, poll for
readiness, scrape /metrics and read Kafka and the store back. Each of those exists here once,
so a fix (a leaked child, a poll that swallows the log, a quantile off by a bucket) lands
everywhere at once:

- `harness.process`: child processes in their own session, always stopped; free ports.
- `harness.poll`: the one polling loop (`wait_until`, `wait_http`).
- `harness.prometheus`: the one /metrics parser and the histogram quantile maths.
- `harness.kafka`: reading, counting and producing records; consumer-group state.
- `harness.db`: throwaway PostgreSQL databases and row counts in SQLite / PostgreSQL.
- `harness.isolation`: a run's own topics, consumer group and ports, and the environment for them.
- `harness.stack`: a private API + pool on the running Kafka (the gate and the benches).
- `harness.readings`: deterministic test readings.
"""
