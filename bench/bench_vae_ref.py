#!/usr/bin/env python3
"""diffusers' AutoencoderKLCogVideoX on the shapes bench_vae (bench/bench_vae.cpp) measures.

Same flags and the same JSON keys as bench_vae, with "impl": "diffusers", so the two outputs can be
put side by side. Random weights (default initialisation) at the released CogVideoX VAE size unless
--config or --model is given. Peak memory is torch.cuda.max_memory_allocated() over the timed runs
(the statistic bench_vae reads from the same caching allocator); on CPU the process's peak RSS.

    python bench/bench_vae_ref.py --device cuda --dtype bf16 --frames 49 --height 480 --width 720
"""
import argparse
import json
import resource
import time

import torch
from diffusers import AutoencoderKLCogVideoX

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def measure(args, device, fn):
    for _ in range(args.warmup):
        fn()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return min(seconds), sum(seconds) / len(seconds), peak_bytes(device)


def report(bench, args, device, latent_frames, timing):
    t_min, t_mean, peak = timing
    print(json.dumps({
        "bench": bench, "impl": "diffusers", "device": device_name(device), "dtype": args.dtype,
        "batch": args.batch, "frames": args.frames, "height": args.height, "width": args.width,
        "latent_frames": latent_frames, "tiled": args.tiled, "repeat": args.repeat,
        "seconds_min": round(t_min, 4), "seconds_mean": round(t_mean, 4), "peak_bytes": int(peak),
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="default", help="'default' or a vae/config.json")
    p.add_argument("--model", default="", help="diffusers pipeline or vae folder (real weights)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--what", default="both", choices=["encode", "decode", "both"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=49)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=720)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiled", action="store_true")
    p.add_argument("--cudnn-benchmark", action="store_true")
    args = p.parse_args()

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(args.seed)
    if args.model:
        import os
        sub = "vae" if os.path.isdir(os.path.join(args.model, "vae")) else None
        vae = AutoencoderKLCogVideoX.from_pretrained(args.model, subfolder=sub, torch_dtype=dtype)
    elif args.config == "default":
        vae = AutoencoderKLCogVideoX()
    else:
        vae = AutoencoderKLCogVideoX.from_config(AutoencoderKLCogVideoX.load_config(args.config))
    vae = vae.to(device=device, dtype=dtype).eval()
    if args.tiled:
        vae.enable_tiling()

    cfg = vae.config
    s = 2 ** (len(cfg.block_out_channels) - 1)
    r = int(cfg.temporal_compression_ratio)
    if args.frames < 1 or (args.frames - 1) % r:
        raise SystemExit(f"--frames must be {r}k+1, got {args.frames}")
    latent_frames = (args.frames - 1) // r + 1
    with torch.no_grad():
        if args.what in ("encode", "both"):
            video = torch.rand(args.batch, cfg.in_channels, args.frames, args.height, args.width,
                               device=device, dtype=dtype) * 2 - 1
            report("vae_encode", args, device, latent_frames, measure(args, device, lambda: vae.encode(video)))
            del video
        if args.what in ("decode", "both"):
            z = torch.randn(args.batch, cfg.latent_channels, latent_frames, args.height // s, args.width // s,
                            device=device, dtype=dtype)
            report("vae_decode", args, device, latent_frames, measure(args, device, lambda: vae.decode(z)))


if __name__ == "__main__":
    main()
