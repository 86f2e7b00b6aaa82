# Two commands for a newcomer: `make run` and `make test`. Both install what is missing.
.PHONY: setup jars cds run test test-fast bench lint lock clean help airflow

VENV ?= .venv
PY := $(VENV)/bin/python
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(PY))

# the use case (conf/<usecase>/); empty: the env's default (usecase: in conf/envs/embedded.yaml)
USECASE ?=
UC_ARGS = $(if $(USECASE),--usecase $(USECASE),)

help:
	@echo "make run    - install what is missing, write the demo data, run the whole pipeline (embedded env); USECASE=maintenance for the second use case"
	@echo "make test   - install what is missing, run every test"
	@echo "make bench  - benchmark every stage and its peers at SCALE entities (default 30000,100000,1000000) x DAYS [USECASE=...]; writes docs/benchmarks.md"
	@echo "make airflow - install the Airflow environment (.venv-airflow) of orchestration/airflow: a DAG per use case, see its README.md"
	@echo "make cds    - write the driver's class-data-sharing archive, once: a scheduled run's JVM starts faster"
	@echo "make lint   - ruff"
	@echo "make clean  - remove var/ (data, warehouse, metastore, MLflow) and dist/"

setup:
	@./scripts/setup.sh

# Airflow in its own venv (its pins conflict with requirements.lock); quiet when installed
airflow:
	@./orchestration/airflow/install.sh

jars: setup

# the driver's class-data-sharing archive: a scheduled run's JVM starts faster (lakeml.bench.cds;
# about 4 minutes, once per machine and jar set; make bench writes it too)
cds: setup
	@$(PY) -m lakeml.bench.cds build

run: setup
	./spark-submit.sh jobs/generate.py $(UC_ARGS)
	./spark-submit.sh jobs/pipeline.py $(UC_ARGS)
	@echo 'Query the results with ./scripts/sql.sh -e "..." (the SQL printed above)'

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not e2e and not subprocess"

SCALE ?= 30000,100000,1000000
DAYS ?= 120
HISTORY ?= 90,180,360,720
HISTORY_ENTITIES ?= 30000
BENCH_ARGS ?=
bench:
	@./scripts/setup.sh --bench
	$(PY) scripts/bench.py --scales $(SCALE) --days $(DAYS) --history "$(HISTORY)" --history-entities $(HISTORY_ENTITIES) $(UC_ARGS) $(BENCH_ARGS)

lint: setup
	$(PY) -m ruff check lib jobs tests orchestration

# re-resolve the pinned set from requirements.in (needs the package index)
lock:
	python3 -m venv /tmp/lakeml-lock && /tmp/lakeml-lock/bin/pip install -q -r requirements.in && /tmp/lakeml-lock/bin/pip freeze > requirements.lock

clean:
	rm -rf var dist
