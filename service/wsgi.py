"""The module-level WSGI app gunicorn serves. Imported in each worker after fork,
so the Kafka producer (and its delivery thread) belongs to that worker alone."""

from __future__ import annotations

import logging

from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from service.app import create_app
from service.producer import ReadingProducer

log = logging.getLogger("service")

settings = Settings.from_env()
try:
    ensure_topics(settings.kafka)
except Exception as e:
    log.warning("could not ensure topics on %s: %s", settings.kafka.kafka_broker, e)
producer = ReadingProducer(settings.kafka, settings.api)
app = create_app(settings.api, producer)
