# Two commands do all setup on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 7071
PROCESSES ?= 1
BACKEND ?= embedded
PYTEST_ARGS ?=
# The docs page test drives Debian's Chromium through Debian's chromedriver.
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck pytest reset bench soak checkov clean help browser

help:
	@echo "make run      start the local host on http://127.0.0.1:$(PORT)/api (BACKEND=embedded|azure, PROCESSES=N)"
	@echo "make test     lint, type-check and run every test (starts the test servers itself)"
	@echo "make bench    run the benchmarks in bench/"
	@echo "make soak     the convergence soak under chaos, longer (ORDERS=1000 SEED=1)"
	@echo "make reset    delete the local host's data (.data/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.local-installed: requirements.txt requirements-local.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-local.txt
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-local.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.local-installed

# Installed once, when missing (a browser build of a test tool's own cannot be downloaded here).
browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		echo "installing Debian's chromium and chromium-driver for the docs page test"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: $(VENV)/.local-installed
	$(BIN)/python -m devhost --port $(PORT) --backend $(BACKEND) --processes $(PROCESSES)

reset: $(VENV)/.local-installed
	$(BIN)/python -m devhost.reset

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy .

pytest: $(VENV)/.dev-installed node_modules/.installed browser
	$(BIN)/python -m pytest --cov=domain --cov-branch --cov-report=term-missing:skip-covered \
		--cov-fail-under=100 $(PYTEST_ARGS)

checkov:
	bash infra/run-checkov.sh

test: lint typecheck pytest checkov

bench: $(VENV)/.dev-installed node_modules/.installed
	$(BIN)/python -m bench

ORDERS ?= 1000
SEED ?= 1
soak: $(VENV)/.dev-installed
	$(BIN)/python -m tests.soak --orders $(ORDERS) --seed $(SEED)

clean:
	rm -rf .data $(VENV) .venv-checkov node_modules .pytest_cache .mypy_cache .ruff_cache test-output
