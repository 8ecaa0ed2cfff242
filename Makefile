# `make demo` and `make test` work from a fresh clone: each sets up .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: setup test demo bench lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# constraints.txt pins every package to the versions the README's demo table was made with.
	@# No wheel cache: torch's build alone is ~5 GB in .venv, and a CI machine's disk is what it is.
	$(BIN)/python -m pip install -q --no-cache-dir -c constraints.txt -e '.[dev]'
	@# pycocoevalcap's PTB tokenizer and METEOR need Java.
	@command -v java >/dev/null 2>&1 || (echo "installing Java (pycocoevalcap needs it)"; \
	  apt-get install -y -qq default-jre-headless >/dev/null 2>&1 || \
	  echo "warning: no Java; 'vlmtrain eval caption' will say so") 
	@# The `vlmdata view` tests open the page in headless Chromium (Debian's package).
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (echo "installing Chromium (the vlmdata view tests open the page in it)"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	  echo "warning: no Chromium; the page tests will be skipped, saying why")
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	bash examples/demo.sh $(DEMO_OUT)

bench: setup
	bash benchmarks/run_all.sh

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
