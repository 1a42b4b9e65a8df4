# The two commands a newcomer needs (see README.md):
#   make serve   set up .venv and run eventrouter on examples/eventrouter.toml
#   make test    set up .venv (core, every plugin, the example plugin) and run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := $(sort $(dir $(wildcard plugins/*/pyproject.toml examples/*/pyproject.toml)))
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench redis-server chromium clean

$(STAMP): setup.cfg pyproject.toml $(wildcard plugins/*/pyproject.toml examples/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test,redis]' $(foreach p,$(PACKAGES),-e $(p))
	touch $@

serve: $(STAMP)
	$(BIN)/eventrouter serve --config examples/eventrouter.toml

# Redis-backed tests need a redis-server binary: install Debian's package when it is missing.
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package) for the Redis store tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# The console's browser tests drive Debian's chromium (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (Debian package) for the console's browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) redis-server chromium lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache
