# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export COURSEGPT_HOME ?= $(CURDIR)/.coursegpt
export DAGSTER_HOME ?= $(COURSEGPT_HOME)/dagster

.PHONY: install run test dev check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,k8s]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/coursegpt run --base-model tiny-llama

test: $(STAMP)
	$(BIN)/python -m pytest -q

dev: $(STAMP)
	$(BIN)/coursegpt home >/dev/null
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

check: $(STAMP)
	$(BIN)/coursegpt home >/dev/null
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs
	$(BIN)/python -m dbt_style_checks.validate
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .coursegpt .pytest_cache
