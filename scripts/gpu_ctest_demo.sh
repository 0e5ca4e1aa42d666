#!/usr/bin/env bash
# On a GPU machine: build, run every CPU test suite in parallel, then the demo on the tiny recipe
# (CPU), and return the logs: a fast correctness pass when the 2-core machine is busy.
#   scripts/gpu_ctest_demo.sh   (results in $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
make gpu-build JOBS=$(nproc) > "$OUT/build.log" 2>&1
echo "build rc=$? s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
grep -E "error:" -A3 "$OUT/build.log" | head -40
t0=$(date +%s)
(cd build-gpu && CUDA_VISIBLE_DEVICES= ctest --output-on-failure -j 8 --timeout 600) > "$OUT/ctest.log" 2>&1
echo "ctest rc=$? s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
tail -25 "$OUT/ctest.log"
t0=$(date +%s)
CUDA_VISIBLE_DEVICES= build-gpu/bin/t4g demo --out "$OUT/demo" > "$OUT/demo.log" 2>&1
echo "demo rc=$? s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
cp "$OUT/demo/report.md" "$OUT/report.md" 2>/dev/null; cp "$OUT/demo/report.json" "$OUT/report.json" 2>/dev/null
rm -rf "$OUT/demo"
tail -30 "$OUT/demo.log"
