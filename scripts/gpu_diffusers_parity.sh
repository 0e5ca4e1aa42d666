#!/usr/bin/env bash
# On a GPU machine (torch 2.11 in python3, no network): the diffusers side of a t4g export against
# `t4g sample` on the same export, same seed, fp32 on CUDA (the device half of
# tests/integration/sample_cli_test.cpp AnExportSamplesAsDiffusersWithItsLoaderFile, which runs on
# the CPU in CI). Needs build-gpu/ (make gpu-build) and diffusers + peft carried in .ref/py
# (scripts/ref_bundle.sh). Prints one JSON line per case and writes them to $OUT/diffusers_parity.jsonl.
#   scripts/gpu_diffusers_parity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for case in full lora; do
  if [ $case = lora ] && ! PYTHONPATH=.ref/py python3 -c "import peft" 2>/dev/null; then
    echo '{"bench": "diffusers_parity", "case": "lora", "skipped": "peft is not in .ref/py (diffusers loads LoRA through it)"}' \
      | tee -a "$OUT/diffusers_parity.jsonl"
    continue
  fi
  export_dir=tests/fixtures/trained_export/$case/export
  # The file every export ships, next to the export as a user finds it.
  cp -r "$export_dir" "$tmp/$case" && cp models/t4g_diffusers.py "$tmp/$case/"
  args=(--steps 50 --cfg 6 --seed 42 --frames 9 --height 64 --width 96)
  build-gpu/bin/t4g sample --no-progress --model "$tmp/$case" --set model.device=cuda --set model.dtype=fp32 \
    "${args[@]}" --out "$tmp/$case.h5" --save-latents "$tmp/t4g_$case.safetensors"
  PYTHONPATH=.ref/py python3 "$tmp/$case/t4g_diffusers.py" "$tmp/$case" --device cuda "${args[@]}" \
    --out "$tmp/diffusers_$case.safetensors"
  PYTHONPATH=.ref/py python3 - "$case" "$tmp" <<'EOF' | tee -a "$OUT/diffusers_parity.jsonl"
import json, sys
from safetensors.torch import load_file
case, tmp = sys.argv[1], sys.argv[2]
a, b = load_file(f"{tmp}/t4g_{case}.safetensors"), load_file(f"{tmp}/diffusers_{case}.safetensors")
print(json.dumps({"bench": "diffusers_parity", "case": case, "steps": 50, "dtype": "fp32", "device": "cuda",
                  "latents_max_abs": (a["latents"] - b["latents"]).abs().max().item(),
                  "video_max_abs": (a["video"] - b["video"]).abs().max().item(), "tolerance": 1e-4}))
EOF
done
