#!/usr/bin/env bash
# The GPU check in one command, under 8 minutes on one H200:
#
#   bash benchmarks/gpu/fetch_wheels.sh          # here, once: the wheels the GPU image lacks (21 MB)
#   run(command="bash benchmarks/gpu/run.sh", carry=["benchmarks/gpu/wheels"], timeout_s=540)
#   bash benchmarks/gpu/run.sh --cpu-smoke       # here: the same path on a tiny model (no GPU needed)
#
# 1. installs benchmarks/gpu/wheels/*.whl offline (pip --no-index --no-deps), when present
# 2. benchmarks/gpu/bench_gpu.py: bf16 matmul rate, then bf16 train steps (dense, SPLADE, LED with its
#    online teacher; plain, gradient checkpointing, GradCache) of a BERT-base-size model at 64 x (1 + 7),
#    32/128 tokens, with tokens/s and MFU; led encode vs sentence-transformers fp16 encode; prints a table
# 3. the gpu-marked tests (tests/test_gpu.py, tests/test_faiss_search.py)
# Logs and the JSON rows go to $OUT (the device tool's output folder) or /tmp/led-gpu-check.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-/tmp/led-gpu-check}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
started=$(date +%s)

if [ "${1:-}" != "--cpu-smoke" ] && ls benchmarks/gpu/wheels/*.whl >/dev/null 2>&1; then
    $PY -m pip install --quiet --no-index --no-deps benchmarks/gpu/wheels/*.whl 2>&1 | tail -3
fi
$PY -c "import torch, transformers, accelerate, sentence_transformers as st; print('torch', torch.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__, '| sentence-transformers', st.__version__, '| cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

timeout 420 $PY benchmarks/gpu/bench_gpu.py --json "$OUT_DIR/gpu_bench.json" "$@" 2>&1 \
    | grep -v -e "Loading weights" -e "Writing model shards" -e "Warning" -e "warnings.warn" \
    | tee "$OUT_DIR/gpu_bench.log"
bench_status=${PIPESTATUS[0]}
echo "benchmark exit status: $bench_status ($(( $(date +%s) - started )) s so far)"

tests=(tests/test_gpu.py tests/test_faiss_search.py)
marker=gpu
if [ "${1:-}" = "--cpu-smoke" ]; then marker="gpu or not gpu"; tests=(tests/test_gpu.py); fi
timeout 150 $PY -m pytest -q -p no:cacheprovider -m "$marker" "${tests[@]}" 2>&1 | tail -15 | tee "$OUT_DIR/gpu_tests.log"
tests_status=${PIPESTATUS[0]}
echo "gpu tests exit status: $tests_status; total $(( $(date +%s) - started )) s"
[ "$bench_status" -eq 0 ] && [ "$tests_status" -eq 0 ]
