# The two commands: `make up` and `make test`. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
RAY_STAMP := .venv/.installed-ray

.PHONY: install up down test chaos loadtest loadtest-ci bench lint kafka-start kafka-stop clean

install: $(VENV_STAMP)  ## .venv with the pinned dependencies

$(VENV_STAMP): requirements.txt requirements-runtime.txt
	@command -v python3 >/dev/null || { echo "Python 3.10+ is needed"; exit 1; }
	@[ -x $(PY) ] || python3 -m venv .venv
	@echo "[install] pip install -r requirements.txt into .venv"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

.PHONY: install-ray bench-ray bench-rollups
install-ray: $(RAY_STAMP)  ## the optional Ray extra (CONSUMER_BACKEND=ray): requirements-ray.txt into .venv

$(RAY_STAMP): requirements-ray.txt $(VENV_STAMP)
	@echo "[install] pip install -r requirements-ray.txt into .venv"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-ray.txt
	@touch $@

up: install  ## the whole stack: Docker Compose if an engine answers, else local processes
	@deploy/local/stack.sh up

down:  ## stop what `make up` started
	@deploy/local/stack.sh down

test:  ## everything CI runs: set-up, real Kafka + PostgreSQL, pytest, the Locust gate
	@deploy/local/test.sh

chaos: install  ## the whole fault suite (tests/chaos, root: network namespaces); RELIABILITY.md
	@CHAOS_ALL=1 $(PY) -m pytest tests/chaos -v

loadtest: install  ## Locust web UI against the running stack (http://127.0.0.1:8089)
	@.venv/bin/locust -f loadtests/locustfile.py

loadtest-ci: install  ## headless acceptance gate (starts the local stack if needed)
	@$(PY) -m loadtests.gate

bench: install install-ray  ## throughput and latency figures for BENCHMARKS.md
	@deploy/local/bench.sh

bench-rollups: install  ## only the hourly/daily rollups: aggregates p99 on both stores, the pool's throughput before/after (bench/rollups.py)
	@deploy/local/bench.sh rollups

bench-ray: install install-ray  ## only the Ray backend against multiprocessing (bench/ray_pool.py)
	@deploy/local/bench.sh ray_pool

lint: install  ## ruff (lint, format), mypy (pyproject [tool.mypy]), the layer contract (lint-imports, [tool.importlinter])
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy
	@.venv/bin/lint-imports --no-cache --no-logo

kafka-start: install
	@deploy/local/kafka.sh start

kafka-stop:
	@deploy/local/kafka.sh stop

clean:  ## remove run-time data (Kafka log dirs, databases, reports); keeps .venv and caches
	@deploy/local/stack.sh down || true
	@deploy/local/kafka.sh stop || true
	@deploy/local/postgres.sh stop || true
	rm -rf .run data reports

# --- Monitoring, compose and Postman (see docker-compose.yml, monitoring/, postman/) -----
.PHONY: monitoring-check prometheus-start prometheus-stop postman vendor screenshots compose-test chaos-docker

chaos-docker: install  ## one fault-suite scenario beside an iptables-enabled dockerd, started before and after the namespaces
	@for order in before after; do \
	  deploy/docker/chaos-with-dockerd.sh $$order tests/chaos -q -p no:cacheprovider -k "$${CHAOS_DOCKER_SCENARIO:-api_kill9_mid_stream}" || exit 1; \
	done

compose-test: install  ## the Compose stack for real: private dockerd, stand-in images, checks through the ports (docs/docker.md)
	@deploy/docker/compose-test.sh

monitoring-check: install  ## static checks: compose file vs the compose-spec schema, promtool config/rules/unit tests
	@.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	@deploy/local/prometheus.sh check

prometheus-start:  ## local Prometheus (http://127.0.0.1:9090) scraping the `make up` stack, without Docker
	@deploy/local/prometheus.sh start

prometheus-stop:
	@deploy/local/prometheus.sh stop

postman:  ## the Postman collection, run by newman against the running API (API_PORT, default 5000)
	@cd postman && { [ -x node_modules/.bin/newman ] || npm ci --no-audit --no-fund; } && \
	  node_modules/.bin/newman run sensor-api.postman_collection.json -e local.postman_environment.json \
	    --env-var baseUrl=http://127.0.0.1:$${API_PORT:-5000}

# --- The dashboard's front-end files and screenshots (see web/, service/dashboard/static/) -------
vendor:  ## refresh service/dashboard/static/vendor/ (uPlot) from the versions web/package-lock.json pins
	@cd web && npm ci --no-audit --no-fund --loglevel=error && node vendor.mjs

screenshots: install  ## the README's dashboard screenshots (docs/screenshots/), taken by the browser test on its own stack
	@DASHBOARD_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q -p no:cacheprovider tests/dashboard/test_browser.py
