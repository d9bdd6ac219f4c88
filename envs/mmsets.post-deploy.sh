#!/usr/bin/env bash
# Snakemake runs this once after creating envs/mmsets.yaml: packages whose stale pins must be skipped.
set -euo pipefail
pip install --no-deps -r "$(dirname "$0")/no-deps.txt"
