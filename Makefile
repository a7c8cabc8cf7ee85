# make run: a complete working system on a bare machine.  make test: the test services, then the test suite.
# make fuzz: Schemathesis against the real server, a longer budget than make test's.
# make lint: ruff check, then ruff format --check.  make docs: docs/configuration.md, from app/config.py, app/defaults.py and .env.example.
# make run-ferretdb: the service on a real MongoDB-compatible server (FerretDB), its data kept in .services/.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run run-ferretdb services test fuzz lint docs clean

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

test: $(VENV)/.dev services
	$(PY) -m pytest $(PYTEST_ARGS)

fuzz: $(VENV)/.dev  # Schemathesis on the real server (tests/test_fuzz.py) with a longer budget and a fresh seed
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} FUZZ_SEED=$${FUZZ_SEED:-random} $(PY) -m pytest -s -p no:cacheprovider tests/test_fuzz.py

lint: $(VENV)/.dev  # ruff, configured in pyproject.toml: the linter, then the formatter's check (ruff format fixes it)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

docs: $(VENV)/.run  # regenerate docs/configuration.md (tests/test_docs.py fails while it is stale)
	$(PY) -m app.tools.configdoc

clean:
	rm -rf $(VENV) .pytest_cache
