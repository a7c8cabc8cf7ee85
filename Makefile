# make run: a complete working system on a bare machine (and the moviecat command in .venv/bin).  make test: make setup, then the whole suite in parallel.
# make setup: what the tests need, installed (requirements-dev.txt, npm's eslint/prettier; Redis, FerretDB, PostgreSQL, Chromium by
# scripts/test-services.sh), printing only what it installs, builds, starts or misses: silent when all is there.
# make check: make lint, then the fast tier in parallel (no slow, server, browser or FerretDB tests; about a minute).
# make fuzz: Schemathesis against the real server, a longer budget than make test's.
# make lint: ruff, mypy, eslint, prettier.  make docs: docs/configuration.md and .env.example, from app/settings.py.
# make run-ferretdb: the service on a real MongoDB-compatible server (FerretDB), its data kept in .services/.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for make test and make check: auto is one per core (TEST_JOBS=0: one process, no xdist).
TEST_JOBS ?= auto
FAST_TIER := not slow and not server and not browser and not ferretdb

.PHONY: run run-ferretdb services setup test check fuzz lint docs clean

$(VENV)/.run: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # the moviecat command, in .venv/bin
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

setup: $(VENV)/.dev node_modules/.installed  # the installs, quiet: make test and .ci/run call it first
	@bash scripts/test-services.sh --quiet

test: setup
	$(PY) -m pytest -n $(TEST_JOBS) $(PYTEST_ARGS)

check: lint  # the one-minute loop: needs only the pip packages, no service
	$(PY) -m pytest -n $(TEST_JOBS) -m "$(FAST_TIER)" $(PYTEST_ARGS)

fuzz: $(VENV)/.dev  # Schemathesis on the real server (tests/test_fuzz.py) with a longer budget and a fresh seed
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} FUZZ_SEED=$${FUZZ_SEED:-random} $(PY) -m pytest -s -p no:cacheprovider tests/test_fuzz.py

lint: $(VENV)/.dev node_modules/.installed  # ruff (pyproject.toml): linter, formatter's check; the page's modules: eslint, prettier
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	node_modules/.bin/eslint app/static eslint.config.mjs && node_modules/.bin/prettier --log-level warn --check app/static/*.js eslint.config.mjs
	$(PY) -m mypy  # types (app/ and moviecat/), configured in pyproject.toml

node_modules/.installed: package.json package-lock.json  # eslint and prettier, as package-lock.json pins them
	@command -v npm >/dev/null || { echo "make lint needs Node.js and npm: apt-get install nodejs npm" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error && touch $@

docs: $(VENV)/.run  # regenerate docs/configuration.md and .env.example (tests/test_docs.py fails while stale)
	$(PY) -m app.tools.configdoc

clean:
	rm -rf $(VENV) .pytest_cache
