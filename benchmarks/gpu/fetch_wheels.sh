#!/usr/bin/env bash
# Download, here (with internet), the wheels the GPU machine's image lacks, for its CPython 3.12 on
# manylinux x86_64, into benchmarks/gpu/wheels/ (git-ignored). run.sh installs them there offline
# (pip install --no-index --no-deps). Everything that travels to that machine (the working tree + these
# wheels) must stay under 64 MiB: the script stops if the wheels pass WHEEL_BUDGET_MB (default 48).
#
#   bash benchmarks/gpu/fetch_wheels.sh
#
# The image has torch (CUDA 13), transformers, accelerate, sentence-transformers, pyarrow, pandas, scipy,
# fsspec, xxhash, psutil, pytest (see the device notes); missing are the packages below (versions as
# resolved in this project's CPU environment). faiss: the CPU build; the GPU builds on PyPI are CUDA 12
# (torch there is CUDA 13) or carry cuVS (far over the budget), so faiss searches on the CPU there and the
# gpu-marked faiss test skips.
set -euo pipefail
cd "$(dirname "$0")"
PIP="${PIP:-python3 -m pip}"
BUDGET_MB="${WHEEL_BUDGET_MB:-48}"
mkdir -p wheels
PACKAGES=(
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 evaluate==0.4.6
    ir_measures==0.4.3 pytrec-eval-terrier==0.5.11 bm25s==0.3.16 PyStemmer==3.1.0 faiss-cpu==1.15.1
)
$PIP download --dest wheels --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.12 --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 --platform linux_x86_64 \
    "${PACKAGES[@]}"
size_mb=$(du -sm wheels | cut -f1)
ls -l wheels
echo "wheels: ${size_mb} MB (budget ${BUDGET_MB} MB)"
if [ "$size_mb" -gt "$BUDGET_MB" ]; then
    echo "over the budget: the working tree + wheels must stay under 64 MiB" >&2
    exit 1
fi
