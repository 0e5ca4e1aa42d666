#!/usr/bin/env python3
"""Reference for bench/bench_t5.cpp: transformers' T5EncoderModel on the same config, batch sizes,
length, dtype and device, printing JSON lines with the same keys (impl "transformers").

    python bench/bench_t5_ref.py --full --batch 1 2 8 --length 226 --dtype bf16 --device cuda
Run both in the same job on the same GPU so that the figures are comparable. Needs transformers
importable (scripts/ref_bundle.sh bundles only diffusers). fp16 keeps every DenseReluDense.wo in
fp32 as from_pretrained(torch_dtype=float16) does (T5's _keep_in_fp32_modules); --attn picks
transformers' attention implementation (sdpa is its default for T5, eager the original math).
"""
import argparse
import json
import time

import torch
from transformers import T5Config, T5EncoderModel

XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24,
           relative_attention_num_buckets=32, relative_attention_max_distance=128,
           feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6)
TINY = dict(XXL, d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2)


def forward_flops(cfg, batch, length):
    """Same formula as the C++ benchmark (research/cogvideox.md 8.2), for the batch."""
    inner = cfg.num_heads * cfg.d_kv
    ff = cfg.d_ff * (3 if cfg.is_gated_act else 2)
    per_layer = 2 * length * (4 * cfg.d_model * inner + ff * cfg.d_model) + 4 * length * length * inner
    return float(per_layer) * cfg.num_layers * batch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the real T5 v1.1 XXL config; default: tiny")
    ap.add_argument("--config", default="", help="a transformers T5 config.json (overrides --full)")
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--length", type=int, default=226)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()

    kwargs = json.load(open(args.config)) if args.config else dict(XXL if args.full else TINY)
    if args.layers:
        kwargs["num_layers"] = args.layers
    cfg = T5Config(**kwargs)
    cfg._attn_implementation = args.attn
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    device = torch.device(args.device)

    torch.manual_seed(0)
    with torch.device(device):
        model = T5EncoderModel(cfg).to(dtype).eval()
    if dtype == torch.float16:
        for block in model.encoder.block:
            block.layer[-1].DenseReluDense.wo.float()
    params = sum(p.numel() for p in model.parameters())

    for batch in args.batch:
        ids = torch.randint(0, cfg.vocab_size, (batch, args.length), device=device)

        def step():
            with torch.no_grad():
                model(ids)

        for _ in range(args.warmup):
            step()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            step()
            sync(device)
            times.append(time.perf_counter() - start)
        times.sort()
        median = times[len(times) // 2]
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        print(json.dumps({
            "bench": "t5", "impl": "transformers", "attn": args.attn,
            "preset": args.config or ("xxl" if args.full else "tiny"), "layers": cfg.num_layers,
            "params": params, "batch": batch, "length": args.length, "dtype": args.dtype,
            "device": str(device), "iters": args.iters, "median_s": median, "min_s": times[0],
            "prompts_per_s": batch / median, "peak_gib": peak,
            "model_tflops": forward_flops(cfg, batch, args.length) / median / 1e12,
        }, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
