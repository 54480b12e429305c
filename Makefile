# Each target sets itself up: a fresh clone needs only `make demo` or `make test`.
# `python` resolves through pyenv to the version in .python-version (3.12).
PYTHON ?= python
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint docs bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), f"Python 3.12+ needed, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,ib,docs]' --config-settings editable_mode=strict
	touch $@

install: $(VENV)/.installed
	@# strict editable installs link files: refresh so files added since are importable
	@$(BIN)/python -m pip install -q --no-deps -e . --config-settings editable_mode=strict 2>/dev/null

demo: install
	$(BIN)/nautilus-backfill demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check core plugins tests benchmarks examples docs/hooks.py
	$(BIN)/ruff format --check core plugins examples docs/hooks.py
	$(BIN)/mypy -p nautilus_backfill

# The site, into build/site; the reference pages are generated from the code (docs/hooks.py).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: install
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_formats.py
	$(BIN)/python benchmarks/bench_aggregate.py
	$(BIN)/python benchmarks/bench_ib.py

clean:
	rm -rf $(VENV) build *.egg-info
