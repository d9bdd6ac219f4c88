# Two entry points: `make demo` (set up, then run the offline demo) and `make test` (set up, then test).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[offline,test]"
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES) results/demo/report.html

test: setup
	$(BIN)/python -m pytest -ra

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results resources .snakemake
