"""Create the pipeline's topics if missing (whichever component starts first does it)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # NOTE: where confluent_kafka.admin takes it from (its stubs live there)

from pipeline.kafka_config import Config
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

# NOTE: the broker stamps each reading record with its own append time, so the pool can
# measure broker append -> fetch (sensor_pipeline_stage_seconds{stage="append_to_fetch"});
# the API's receipt time travels in the `ingested_at_ns` header.
READINGS_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}

# NOTE: -1 asks the broker for its own default.replication.factor (and min.insync.replicas
# stays the broker's): 1 on the single local node, 3 (with min.insync.replicas=2) on the
# three-node cluster (deploy/local/kafka/cluster.properties), whatever production sets.
# A fixed number here would create an unreplicated topic on a cluster, or fail on one node.
REPLICATION_FACTOR = -1


def ensure_topics(kafka: KafkaSettings, timeout: float = 10.0) -> None:
    """Create TOPIC_NAME (TOPIC_PARTITIONS), the DLQ and the alerts topic, replicated as the
    broker defaults say; existing ones are kept."""
    config: Config = {**kafka.common()}
    admin = AdminClient(config)
    wanted = {
        kafka.topic_name: (kafka.topic_partitions, READINGS_TOPIC_CONFIG),
        kafka.dlq_topic: (1, {}),
        kafka.alerts_topic: (1, {}),
    }
    existing = admin.list_topics(timeout=timeout).topics
    missing = [
        NewTopic(name, partitions, REPLICATION_FACTOR, config=config)
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
