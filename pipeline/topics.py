"""Create the pipeline's topics if missing (whichever component starts first does it)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

# NOTE: the broker stamps each reading record with its own append time, so the pool can
# measure broker append -> fetch (sensor_pipeline_stage_seconds{stage="append_to_fetch"});
# the API's receipt time travels in the `ingested_at_ns` header.
READINGS_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def ensure_topics(kafka: KafkaSettings, timeout: float = 10.0) -> None:
    """Create TOPIC_NAME (TOPIC_PARTITIONS), the DLQ and the alerts topic; existing ones are kept."""
    admin = AdminClient(kafka.common())
    wanted = {
        kafka.topic_name: (kafka.topic_partitions, READINGS_TOPIC_CONFIG),
        kafka.dlq_topic: (1, {}),
        kafka.alerts_topic: (1, {}),
    }
    existing = admin.list_topics(timeout=timeout).topics
    missing = [
        NewTopic(name, partitions, 1, config=config)
        for name, (partitions, config) in wanted.items()
        if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result()
            log.info("created topic %s", name)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
