# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install a
# locked dependency set first: `make demo` the base install + the `examples` extra
# (requirements/demo.lock), `make test` every extra (requirements/lock.txt). demo.lock is resolved
# within lock.txt, so both can share one .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
TEST_WORKERS ?= 2
DEMO_STAMP := $(VENV)/.installed-demo
# The lowest Airflow minor pyproject.toml claims, in its own venv (`make test-lowest-airflow`),
# from requirements/airflow-$(AIRFLOW_LOWEST).lock.
AIRFLOW_LOWEST := 3.3
VENV_LOW ?= .venv-airflow-$(AIRFLOW_LOWEST)
STAMP_LOW := $(VENV_LOW)/.installed
LOCK_LOW := requirements/airflow-$(AIRFLOW_LOWEST).lock
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header

.PHONY: install demo test unit e2e lint bench lock clean test-lowest-airflow

# uv itself comes from PyPI at a pinned version, into the venv it installs into.
define venv_with_uv
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
endef

$(STAMP): pyproject.toml requirements/lock.txt
	$(call venv_with_uv,$(VENV))
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/lock.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml requirements/demo.lock
	$(call venv_with_uv,$(VENV))
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/demo.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(DEMO_STAMP)

$(STAMP_LOW): pyproject.toml $(LOCK_LOW)
	$(call venv_with_uv,$(VENV_LOW))
	$(VENV_LOW)/bin/uv pip install --quiet --python $(VENV_LOW)/bin/python -r $(LOCK_LOW)
	$(VENV_LOW)/bin/uv pip install --quiet --python $(VENV_LOW)/bin/python --no-deps -e .
	touch $(STAMP_LOW)

## Everything the tests need (every extra), into .venv.
install: $(STAMP)

## Run the local demo DAG end to end (no cloud account): provision a Dask cluster, ETL, teardown, evidence.
demo: $(DEMO_STAMP)
	$(BIN)/airflow-runners demo

## Run the whole test suite: lint, types, unit and integration tests (real Airflow, real Dask),
## on TEST_WORKERS pytest-xdist workers: one test file per worker at a time, and every test on a
## real deployment (tests/chaos, tests/e2e) on one worker, in order (tests/conftest.py).
test: $(STAMP)
	$(BIN)/ruff check airflow_provider_runners dags tests benchmarks scripts
	$(BIN)/ruff format --check airflow_provider_runners dags tests benchmarks scripts
	$(BIN)/mypy airflow_provider_runners
	$(BIN)/python -m pytest -n $(TEST_WORKERS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

## On the lowest Airflow we claim: the unit tests, every backend's integration tests once and the
## end-to-end smoke run (the selection is tests/lowest-airflow.txt).
test-lowest-airflow: $(STAMP_LOW)
	$(VENV_LOW)/bin/python -c "import airflow, sys; v = airflow.__version__; \
		sys.exit(0 if v.startswith('$(AIRFLOW_LOWEST).') else f'expected Airflow $(AIRFLOW_LOWEST).x, found {v}')"
	$(VENV_LOW)/bin/python -m pytest $$(grep -v '^#' tests/lowest-airflow.txt); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## End-to-end only: a real deployment on PostgreSQL + Redis (scripts/ensure-services.sh sets them up as root).
e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check --fix airflow_provider_runners dags tests benchmarks scripts
	$(BIN)/ruff format airflow_provider_runners dags tests benchmarks scripts

## Benchmarks (results are written to docs/benchmarks.md by hand from the printed table).
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## Re-resolve the three locks from pyproject.toml (needs network to PyPI): every extra on the newest
## Airflow, the demo set within it, and every extra on the lowest Airflow claimed.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --all-extras $(LOCK_FLAGS) -o requirements/lock.txt
	$(BIN)/uv pip compile pyproject.toml --extra examples -c requirements/lock.txt $(LOCK_FLAGS) \
		-o requirements/demo.lock
	$(BIN)/uv pip compile pyproject.toml --all-extras -c requirements/airflow-$(AIRFLOW_LOWEST).constraints.txt \
		$(LOCK_FLAGS) -o $(LOCK_LOW)

clean:
	rm -rf $(VENV) $(VENV_LOW) .airflow-home build dist
