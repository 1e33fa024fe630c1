PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DB ?= userloop-data/userloop.duckdb
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test install install-dev lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

demo: install
	$(BIN)/userloop demo --db $(DB)
	$(BIN)/userloop serve --db $(DB) --host $(HOST) --port $(PORT) --show-credentials

test: install-dev
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check userloop tests benchmarks

bench: install-dev
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) userloop-data
