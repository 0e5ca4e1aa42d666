#!/usr/bin/env bash
# On a GPU machine (torch 2.11 in python3, no OpenCV): build, run every test, then the transformer
# benchmark side by side with diffusers (carried in .ref/py by scripts/ref_bundle.sh).
# Writes build/test logs and benchmark JSON lines to $OUT (or ./gpu-out).
#   scripts/gpu_check.sh [test|bench|all]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
what=${1:-all}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/device.txt" 2>&1
git rev-parse --short HEAD >> "$OUT/device.txt" 2>/dev/null || true

if [ "$what" = test ] || [ "$what" = all ]; then
  start=$(date +%s)
  make gpu-build JOBS=$(nproc) > "$OUT/build.log" 2>&1
  echo "build rc=$? seconds=$(( $(date +%s) - start ))" | tee -a "$OUT/summary.txt"
  (cd build-gpu && ctest --output-on-failure -j 4 --timeout 900) > "$OUT/ctest.log" 2>&1
  echo "ctest rc=$?" | tee -a "$OUT/summary.txt"
  tail -15 "$OUT/ctest.log"
fi

if [ "$what" = bench ] || [ "$what" = all ]; then
  bench() {  # bench NAME ARGS...: ours, then diffusers with the same flags
    local name=$1; shift
    build-gpu/bin/bench_transformer "$@" >> "$OUT/bench_transformer.jsonl" 2>> "$OUT/bench.err"
    PYTHONPATH=.ref/py python3 bench/bench_transformer_ref.py "$@" >> "$OUT/bench_transformer_ref.jsonl" 2>> "$OUT/bench.err"
  }
  bench 2b --preset 2b --dtype bf16 --device cuda --modes forward train train_ckpt
  bench 5b --preset 5b --dtype bf16 --device cuda --modes forward train_ckpt
  cat "$OUT"/bench_transformer*.jsonl
fi
