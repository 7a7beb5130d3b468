"""The module-level WSGI app gunicorn serves. Imported in each worker after fork,
so the Kafka producer (and its delivery thread) belongs to that worker alone."""

from __future__ import annotations

import logging

from service.app import create_app
from service.producer import ReadingProducer
from service.settings import Settings
from service.topics import ensure_topics

log = logging.getLogger("service")

settings = Settings.from_env()
try:
    ensure_topics(settings)
except Exception as e:
    log.warning("could not ensure topics on %s: %s", settings.kafka_broker, e)
producer = ReadingProducer(settings)
app = create_app(settings, producer)
