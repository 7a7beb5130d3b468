"""`python -m consumer_pool [--workers N] [--sink console|sqlite|postgres] [--echo] [--backend multiprocessing|ray]`.

Defaults come from the environment (pipeline.settings.PoolSettings); the flags are derived
from the same fields. The pool keeps its own prometheus multiprocess folder
(CONSUMER_METRICS_DIR, default a temp dir keyed by CONSUMER_METRICS_PORT), separate from
the API's, cleared at start.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from consumer_pool import logs
from consumer_pool.errors import EXIT_CONFIG_ERROR, WORKER_BOOT_ERROR
from pipeline import metrics_folder
from pipeline.alerts import RuleError
from pipeline.settings import ConfigError, PoolSettings, Settings, apply_flags, cli_flags


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m consumer_pool", description=__doc__.splitlines()[0])
    cli_flags(parser, PoolSettings)
    return parser.parse_args(argv)


def configure(argv: list[str] | None) -> Settings:
    """Settings from the environment and the flags; raises ConfigError or RuleError."""
    args = parse_args(argv)
    settings = apply_flags(Settings.from_env(), args)
    logs.configure("supervisor", settings.log_level)
    if settings.pool.sink == "postgres" and not settings.pool.database_url:
        raise ConfigError("SINK=postgres needs DATABASE_URL")
    if settings.pool.consumer_backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("CONSUMER_BACKEND=ray needs Ray: pip install -r requirements-ray.txt (make install-ray)")
    from pipeline.alerts import parse_rules

    parse_rules(settings.pool.alert_rules)
    return settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = configure(argv)
    except (ConfigError, RuleError) as e:
        print(f"configuration error: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR

    # NOTE: before anything imports prometheus_client (it reads the variable at import);
    # spawned workers inherit it.
    folder = metrics_folder.pool_folder(settings.pool)
    metrics_folder.clear(folder)
    metrics_folder.use(folder)

    import logging

    from confluent_kafka import KafkaException

    from consumer_pool import metrics
    from consumer_pool.process_backend import ProcessLauncher
    from consumer_pool.supervisor import Launcher, Supervisor
    from pipeline.topics import ensure_topics

    log = logging.getLogger("consumer_pool")
    try:
        ensure_topics(settings.kafka)
        metrics.serve(settings.pool.consumer_metrics_port)
    except (KafkaException, OSError) as e:
        log.error("cannot start: %s", e)
        return WORKER_BOOT_ERROR
    print(f"Listening to topic: {settings.kafka.topic_name}", flush=True)
    log.info(
        "pool: %d workers (%s), sink %s, group %s, metrics on :%d",
        settings.pool.consumer_workers,
        settings.pool.consumer_backend,
        settings.pool.sink,
        settings.pool.consumer_group,
        settings.pool.consumer_metrics_port,
    )
    launcher: Launcher
    if settings.pool.consumer_backend == "ray":
        from consumer_pool.ray_backend import RayLauncher  # NOTE: Ray is an optional extra (requirements-ray.txt)

        launcher = RayLauncher(settings, folder)
    else:
        launcher = ProcessLauncher(settings)
    code = Supervisor(settings, launcher).run()
    log.info("pool stopped (exit %d)", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
