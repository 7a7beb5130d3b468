"""Create the pipeline's topics if missing (whichever component starts first does it)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)


def ensure_topics(kafka: KafkaSettings, timeout: float = 10.0) -> None:
    """Create TOPIC_NAME (TOPIC_PARTITIONS), the DLQ and the alerts topic; existing ones are kept."""
    admin = AdminClient(kafka.common())
    wanted = {
        kafka.topic_name: kafka.topic_partitions,
        kafka.dlq_topic: 1,
        kafka.alerts_topic: 1,
    }
    existing = admin.list_topics(timeout=timeout).topics
    missing = [NewTopic(name, partitions, 1) for name, partitions in wanted.items() if name not in existing]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result()
            log.info("created topic %s", name)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
