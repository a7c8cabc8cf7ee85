# make run: a complete working system on a bare machine.  make test: make setup, then the whole suite in parallel.
# make setup: what the tests need, installed (requirements-dev.txt; Redis, FerretDB, PostgreSQL, Chromium by
# scripts/test-services.sh), printing only what it installs, builds, starts or misses: silent when all is there.
# make check: make lint, then the fast tier in parallel (no slow, server, browser or FerretDB tests; about a minute).
# make lint: ruff check, then ruff format --check.  make docs: docs/configuration.md, from app/config.py, app/defaults.py and .env.example.
# make run-ferretdb: the service on a real MongoDB-compatible server (FerretDB), its data kept in .services/.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for make test and make check: auto is one per core (TEST_JOBS=0: one process, no xdist).
TEST_JOBS ?= auto
FAST_TIER := not slow and not server and not browser and not ferretdb

.PHONY: run run-ferretdb services setup test check lint docs clean

$(VENV)/.run: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.run
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(VENV)/.run
	$(PY) run.py

run-ferretdb: $(VENV)/.run
	PY=$(PY) bash scripts/run-ferretdb.sh

services:  # Redis, FerretDB and Chromium, installed, built or started as needed (one line each)
	bash scripts/test-services.sh

setup: $(VENV)/.dev  # the installs, quiet: make test and .ci/run call it first
	@bash scripts/test-services.sh --quiet

test: setup
	$(PY) -m pytest -n $(TEST_JOBS) $(PYTEST_ARGS)

check: lint  # the one-minute loop: needs only the pip packages, no service
	$(PY) -m pytest -n $(TEST_JOBS) -m "$(FAST_TIER)" $(PYTEST_ARGS)

lint: $(VENV)/.dev  # ruff, configured in pyproject.toml: the linter, then the formatter's check (ruff format fixes it)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

docs: $(VENV)/.run  # regenerate docs/configuration.md (tests/test_docs.py fails while it is stale)
	$(PY) -m app.tools.configdoc

clean:
	rm -rf $(VENV) .pytest_cache
