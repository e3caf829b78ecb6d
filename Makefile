# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install
# the locked dependency set (requirements/lock.txt) first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: install demo test unit e2e lint bench lock clean

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/lock.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Run the local demo DAG end to end (no cloud account): provision a Dask cluster, ETL, teardown, evidence.
demo: $(STAMP)
	$(BIN)/airflow-runners demo

## Run the whole test suite: lint, types, unit and integration tests (real Airflow, real Dask).
test: $(STAMP)
	$(BIN)/ruff check airflow_provider_runners dags tests benchmarks
	$(BIN)/ruff format --check airflow_provider_runners dags tests benchmarks
	$(BIN)/mypy airflow_provider_runners
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## End-to-end only: a real deployment on PostgreSQL + Redis (scripts/ensure-services.sh sets them up as root).
e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check --fix airflow_provider_runners dags tests benchmarks
	$(BIN)/ruff format airflow_provider_runners dags tests benchmarks

## Benchmarks (results are written to docs/benchmarks.md by hand from the printed table).
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## Re-resolve requirements/lock.txt from pyproject.toml (needs network to PyPI).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header -o requirements/lock.txt

clean:
	rm -rf $(VENV) .airflow-home build dist
