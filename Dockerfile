# One slim image for both Python processes of the pipeline:
#   api:           python -m service        (gunicorn, port 5000)
#   consumer-pool: python -m consumer_pool  (metrics on 9108)
# Only the runtime dependencies are installed: requirements-runtime.txt, the pinned lock of
# pyproject.toml's dependencies (load-test, test and lint tools stay out of the image).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements-runtime.txt /tmp/requirements-runtime.txt
# NOTE: confluent-kafka and psycopg[binary] ship manylinux wheels with librdkafka and libpq
# inside, so no compiler or -dev packages are needed.
RUN pip install -r /tmp/requirements-runtime.txt \
 && rm /tmp/requirements-runtime.txt \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin app \
 && mkdir -p /app/data \
 && chown app:app /app/data

COPY --chown=root:root pipeline/ /app/pipeline/
COPY --chown=root:root store/ /app/store/
COPY --chown=root:root service/ /app/service/
COPY --chown=root:root consumer_pool/ /app/consumer_pool/

USER app

# Container defaults; docker-compose.yml sets the rest (KAFKA_BROKER, SINK, DATABASE_URL, ...).
ENV API_HOST=0.0.0.0 \
    API_PORT=5000 \
    CONSUMER_METRICS_PORT=9108 \
    SQLITE_PATH=/app/data/readings.db

EXPOSE 5000 9108

# The API's readiness (Kafka reachable, topic present); compose overrides it for the pool.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('API_PORT', '5000'), timeout=4)"]

CMD ["python", "-m", "service"]
