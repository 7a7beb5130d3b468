#!/bin/bash
# java with Kafka's jars: kafka-run-class.sh <main class> [args...] (as the official image's).
exec java ${KAFKA_HEAP_OPTS:-} ${KAFKA_OPTS:-} -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml \
  -cp '/opt/kafka/libs/*' "$@"
