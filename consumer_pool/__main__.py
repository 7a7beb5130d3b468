"""`python -m consumer_pool [--workers N] [--sink console|sqlite|postgres] [--echo]`.

Defaults come from the environment (service.settings.Settings). The pool keeps its own
prometheus multiprocess folder (CONSUMER_METRICS_DIR, default a temp dir keyed by
CONSUMER_METRICS_PORT), separate from the API's, cleared at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile

from consumer_pool import logs
from consumer_pool.errors import EXIT_CONFIG_ERROR, WORKER_BOOT_ERROR, RuleError
from service.settings import ConfigError, Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m consumer_pool", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, help="worker processes (CONSUMER_WORKERS)")
    parser.add_argument(
        "--sink",
        choices=("console", "sqlite", "postgres"),
        help="where readings go (SINK)",
    )
    parser.add_argument(
        "--echo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also print each reading (CONSUMER_ECHO)",
    )
    return parser.parse_args(argv)


def metrics_dir(settings: Settings) -> str:
    return settings.consumer_metrics_dir or os.path.join(
        tempfile.gettempdir(), f"sensor-pool-metrics-{settings.consumer_metrics_port}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure("supervisor", settings.log_level)
        overrides = {
            "consumer_workers": args.workers,
            "sink": args.sink,
            "consumer_echo": args.echo,
        }
        settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        if settings.consumer_workers < 1:
            raise ConfigError("--workers must be >= 1")
        if settings.sink == "postgres" and not settings.database_url:
            raise ConfigError("SINK=postgres needs DATABASE_URL")
        from consumer_pool.alerts import parse_rules

        parse_rules(settings.alert_rules)
    except (ConfigError, RuleError) as e:
        print(f"configuration error: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR

    # NOTE: before anything imports prometheus_client; spawned workers inherit it.
    folder = metrics_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder

    import logging

    from confluent_kafka import KafkaException

    from consumer_pool import metrics
    from consumer_pool.supervisor import Supervisor
    from service.topics import ensure_topics

    log = logging.getLogger("consumer_pool")
    try:
        ensure_topics(settings)
        metrics.serve(settings.consumer_metrics_port)
    except (KafkaException, OSError) as e:
        log.error("cannot start: %s", e)
        return WORKER_BOOT_ERROR
    print(f"Listening to topic: {settings.topic_name}", flush=True)
    log.info(
        "pool: %d workers, sink %s, group %s, metrics on :%d",
        settings.consumer_workers,
        settings.sink,
        settings.consumer_group,
        settings.consumer_metrics_port,
    )
    code = Supervisor(settings).run()
    log.info("pool stopped (exit %d)", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
