# The two commands a newcomer needs (see README.md):
#   make serve   set up .venv and run eventrouter on examples/eventrouter.toml
#   make test    set up .venv (core, every plugin, the example plugin) and run every test
# and one to ship the packages without an index:
#   make wheels  build a wheel of eventrouter and of every plugin into dist/
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := $(sort $(dir $(wildcard plugins/*/pyproject.toml examples/*/pyproject.toml)))
STAMP := $(VENV)/.installed
# pip says what goes wrong and nothing else; the step lines below say what is going on.
# The packages are built with the setuptools the first step installs (no isolated build
# environment to download it into for each of them).
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
BUILD := --no-build-isolation

.PHONY: serve test lint bench wheels redis-server chromium clean

$(STAMP): setup.cfg pyproject.toml $(wildcard plugins/*/pyproject.toml examples/*/pyproject.toml)
	@echo "[1/3] creating the virtualenv $(VENV) ($$($(PYTHON) --version))"
	@$(PYTHON) -m venv $(VENV)
	@echo "[2/3] upgrading pip, setuptools and wheel in it"
	@$(PIP) install --upgrade pip setuptools wheel
	@echo "[3/3] installing eventrouter, its plugins and the test tools (editable; about a minute)"
	@$(PIP) install $(BUILD) -e '.[test,redis]' $(foreach p,$(PACKAGES),-e $(p))
	@touch $@
	@echo "ready: $(BIN)/eventrouter (or 'source $(BIN)/activate', then 'eventrouter')"

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

# the benchmarks' own extra (Flask and gunicorn for bench/endtoend.py's baseline, py-spy)
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) setup.cfg
	@echo "installing the benchmarks' extra (Flask, gunicorn, py-spy) into $(VENV)"
	@$(PIP) install $(BUILD) -e '.[bench]'
	@touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/endtoend.py

# dist/ then installs anywhere without an index for eventrouter's own packages:
#   pip install --find-links dist 'eventrouter[redis]' eventrouter-slack
wheels: $(STAMP)
	@echo "building wheels of eventrouter and every plugin into dist/"
	@$(PIP) wheel $(BUILD) --no-deps --wheel-dir dist . $(PACKAGES)
	@ls dist/*.whl

clean:
	rm -rf $(VENV) .pytest_cache dist
