# Two entry points: `make demo` (set up, then run the offline demo) and `make test` (set up, then test).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup system demo test lint clean

setup: $(VENV)/.installed system

$(VENV)/.installed: pyproject.toml envs/no-deps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[offline,test]"
	$(BIN)/python -m pip install --quiet --no-deps -r envs/no-deps.txt
	touch $@

# Programs from the system's packages: Tesseract for OCR. Installed when missing and we are root
# (CI, containers); elsewhere install them yourself: apt-get install tesseract-ocr tesseract-ocr-eng
system:
	@command -v tesseract >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null; } || \
		echo "tesseract is missing: apt-get install tesseract-ocr tesseract-ocr-eng"

demo: setup
	$(BIN)/snakemake --cores $(CORES) results/demo/report.html

test: setup
	$(BIN)/python -m pytest -ra

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results resources .snakemake
