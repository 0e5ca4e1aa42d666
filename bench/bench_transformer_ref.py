#!/usr/bin/env python3
"""Reference for bench/bench_transformer.cpp: diffusers' CogVideoXTransformer3DModel (eager) on the
same config, shapes, dtype and modes, printing JSON lines with the same keys (impl "diffusers").

    python bench/bench_transformer_ref.py --preset 5b --frames 13 --height 60 --width 90 --text 226 \
        --dtype bf16 --device cuda
Run both in the same job on the same GPU so that the figures are comparable.
"""
import argparse
import json
import time
import types

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline

PRESETS = {
    "2b": dict(),  # diffusers' defaults are the 2B config
    "5b": dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
    "tiny": dict(num_attention_heads=2, attention_head_dim=16, num_layers=2, text_embed_dim=32,
                 time_embed_dim=32, use_rotary_positional_embeddings=True),
}


def forward_flops(cfg, batch, frames, h, w, text):
    """research/cogvideox.md 8.2, for the batch (same formula as the C++ benchmark)."""
    d = cfg.num_attention_heads * cfg.attention_head_dim
    pt = cfg.patch_size_t or 1
    patch = cfg.patch_size ** 2 * pt
    nv = frames // pt * (h // cfg.patch_size) * (w // cfg.patch_size)
    n = nv + text
    temb = cfg.time_embed_dim
    f = cfg.num_layers * (24 * n * d * d + 4 * n * n * d)
    f += 2 * nv * cfg.in_channels * patch * d + 2 * text * cfg.text_embed_dim * d
    f += 2 * nv * d * patch * cfg.out_channels
    f += cfg.num_layers * 2 * 2 * temb * 6 * d + 2 * (d * temb + temb * temb) + 2 * temb * 2 * d
    return float(f) * batch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="2b", choices=sorted(PRESETS))
    ap.add_argument("--config", default="", help="a diffusers transformer config.json (overrides --preset)")
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--frames", type=int, default=13)
    ap.add_argument("--height", type=int, default=60)
    ap.add_argument("--width", type=int, default=90)
    ap.add_argument("--text", type=int, default=226)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["forward", "train", "train_ckpt"])
    ap.add_argument("--profile", type=int, default=0,
                    help="after timing, profile this many calls per mode: device time per kernel category")
    args = ap.parse_args()

    kwargs = json.load(open(args.config)) if args.config else dict(PRESETS[args.preset])
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
    if args.layers:
        kwargs["num_layers"] = args.layers
    kwargs["max_text_seq_length"] = args.text
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    device = torch.device(args.device)

    torch.manual_seed(0)
    with torch.device(device):
        model = CogVideoXTransformer3DModel(**kwargs).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.02)
            if p.dim() == 1 and name.endswith("weight"):
                p.add_(1.0)
    cfg = model.config
    x = torch.randn(args.batch, args.frames, cfg.in_channels, args.height, args.width, device=device, dtype=dtype)
    enc = torch.randn(args.batch, args.text, cfg.text_embed_dim, device=device, dtype=dtype)
    t = torch.full((args.batch,), 500, device=device, dtype=torch.long)
    rope = None
    if cfg.use_rotary_positional_embeddings:
        fake_pipe = types.SimpleNamespace(vae_scale_factor_spatial=8, transformer=model)
        rope = CogVideoXPipeline._prepare_rotary_positional_embeddings(
            fake_pipe, args.height * 8, args.width * 8, args.frames, device)
    flops = forward_flops(cfg, args.batch, args.frames, args.height, args.width, args.text)

    for mode in args.modes:
        train = mode != "forward"
        if mode == "train_ckpt":
            model.enable_gradient_checkpointing()
        else:
            model.disable_gradient_checkpointing()
        model.train(train)

        def step():
            if not train:
                with torch.no_grad():
                    model(x, enc, t, image_rotary_emb=rope, return_dict=False)
                return
            out = model(x, enc, t, image_rotary_emb=rope, return_dict=False)[0]
            out.float().square().mean().backward()
            for p in model.parameters():
                p.grad = None

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
            "bench": "transformer", "impl": "diffusers", "mode": mode,
            "preset": args.config or args.preset, "layers": cfg.num_layers,
            "shape": [args.batch, args.frames, cfg.in_channels, args.height, args.width], "text": args.text,
            "dtype": args.dtype, "device": str(device), "iters": args.iters, "median_s": median,
            "min_s": times[0], "peak_gib": peak,
            "model_tflops": flops * (3.0 if train else 1.0) / median / 1e12,
        }, sort_keys=True), flush=True)
        if args.profile > 0:
            from kernel_profile import profile_kernels  # bench/kernel_profile.py, next to this script
            p = profile_kernels(step, args.profile)
            p.update({"bench": "transformer_profile", "impl": "diffusers", "mode": mode,
                      "preset": args.config or args.preset})
            print(json.dumps(p), flush=True)


if __name__ == "__main__":
    main()
