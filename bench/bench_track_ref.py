#!/usr/bin/env python3
"""Reference for bench/bench_track.cpp: DiffTrack's tracking procedure (evaluate_tapvid.py with
--chunk_frame_interval --average_overlapped_corr, research/methods.md 1.4-1.5) rebuilt on diffusers'
CogVideoXTransformer3DModel and AutoencoderKLCogVideoX with random weights from their configs, on
the same video shape, printing one JSON line with the same keys (impl "difftrack-diffusers").

Per chunk, as the reference pipeline does: the chunk's 13 frames (frame 0 prepended) are encoded
one by one by the tiled VAE (posterior sample, seed 42) and scaled; the WHOLE transformer runs once
with the CFG batch of 2 (two identical empty-prompt embeddings) at t = timesteps[49] = 19; Q/K of
block 17 are captured by a small attention-processor subclass; cost maps are computed in bf16
(einsum, softmax, head mean, both directions) and kept until all chunks are done; then the maps of
each frame are averaged, arg-maxed and read out with grid_sample (margin m = W / 1024).
Not included (both favour the reference): the T5 encoding of the empty prompt that the pipeline
repeats per chunk (zeros stand in), and the wasted scheduler step + VAE decode after the forward
(add --decode to include the decode).

    python bench/bench_track_ref.py --full --iters 3        # 2B configs, 50 x 480 x 720, on the GPU
    python bench/bench_track_ref.py --device cpu --dtype fp32 --iters 1 --warmup 0   # tiny smoke run
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models import attention_processor
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0

TINY_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, num_layers=2, text_embed_dim=32,
                        time_embed_dim=32, in_channels=4, out_channels=4, max_text_seq_length=16,
                        sample_height=8, sample_width=12, sample_frames=9)
TINY_VAE = dict(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                sample_height=64, sample_width=96, scaling_factor=1.0,
                down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4)


class CaptureQK(CogVideoXAttnProcessor2_0):
    """CogVideoX attention that keeps the query and key it feeds to SDPA (after QK-norm and RoPE)."""

    def __init__(self):
        super().__init__()
        self.query = None
        self.key = None

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        sdpa = attention_processor.F.scaled_dot_product_attention

        def capture(q, k, v, **kwargs):
            self.query, self.key = q, k
            return sdpa(q, k, v, **kwargs)

        attention_processor.F.scaled_dot_product_attention = capture
        try:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        finally:
            attention_processor.F.scaled_dot_product_attention = sdpa


def chunk_lists(T, chunk_len):
    """evaluate_tapvid.py's loop with --chunk_frame_interval (chunk stride forced to 1)."""
    interval = T // (chunk_len - 1)
    start, end = 1, (chunk_len - 2) * interval + 1
    visited, chunks = set(), []
    while len(visited) < T - 1:
        idx = list(range(start, end + 1, interval))
        visited.update(idx)
        chunks.append(idx)
        start += 1
        end = min(start + (chunk_len - 2) * interval, T - 1)
    return chunks


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02 + (1.0 if p.dim() == 1 and name.endswith("weight") else 0.0))


def track(video, vae, transformer, proc, text, timestep, args, device, dtype):
    """One video: resize, chunks, per-chunk encode + forward + cost maps, combine, read-out."""
    T, H, W, _ = video.shape
    x = video.permute(0, 3, 1, 2).float().to(device)
    x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
    x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)  # [T, 3, H, W] in [0, 255]
    gen = torch.Generator(device=device).manual_seed(42)
    h, w = H // 16, W // 16
    correlations = []
    for chunk in chunk_lists(T, args.chunk_len):
        frames = torch.cat([x[0:1], x[chunk]], 0) / 255.0 * 2.0 - 1.0
        latents = []
        for f in range(frames.shape[0]):
            one = frames[f:f + 1].unsqueeze(2).to(dtype)  # [1, 3, 1, H, W]
            latents.append(vae.encode(one).latent_dist.sample(gen) * vae.config.scaling_factor)
        z = torch.cat(latents, 2).permute(0, 2, 1, 3, 4)  # [1, 13, C, h8, w8]
        z = torch.cat([z, z], 0)  # CFG batch: [uncond, cond]
        transformer(hidden_states=z, encoder_hidden_states=text, timestep=timestep, return_dict=False)
        if args.decode:
            vae.decode(z[:1].permute(0, 2, 1, 3, 4) / vae.config.scaling_factor)
        tl = text.shape[1]
        f_num = z.shape[1]
        q = proc.query[1:2, :, tl:].reshape(1, proc.query.shape[1], f_num, h * w, -1)
        k = proc.key[1:2, :, tl:].reshape(1, proc.key.shape[1], f_num, h * w, -1)
        heads = q.shape[1]
        corr = []
        for j in range(1, f_num):
            tts = torch.einsum("bhid,bhjd->bhij", q[:, :, 0], k[:, :, j]) / math.sqrt(heads)
            stt = torch.einsum("bhid,bhjd->bhij", q[:, :, j], k[:, :, 0]) / math.sqrt(heads)
            tts = tts.softmax(-1).mean(1)  # [1, i, j]
            stt = stt.softmax(-1).mean(1)  # [1, j, i]
            corr.append((tts.transpose(1, 2) + stt) / 2)  # [1, j (target), i (source)]
        correlations.append((chunk, corr))
    combined = {}
    for chunk, corr in correlations:
        for i, frame in enumerate(chunk):
            combined.setdefault(frame, []).append(corr[i])
    margin = W / (64 * 16)
    grid = torch.stack(torch.meshgrid(torch.linspace(11.25, H - 11.25, args.grid),
                                      torch.linspace(11.25, W - 11.25, args.grid), indexing="ij")[::-1], -1)
    grid = grid.reshape(1, -1, 1, 2).to(device) / 16
    grid[..., 0] = grid[..., 0] / (w - margin) * 2 - 1
    grid[..., 1] = grid[..., 1] / (h - margin) * 2 - 1
    tracks = []
    for frame in sorted(combined):
        c = torch.stack(combined[frame], 0).mean(0)[0]  # [j, i]
        idx = c.float().softmax(0).argmax(0)  # best target per source
        mapping = torch.stack([(idx % w).float(), (idx // w).float()], 0).view(1, 2, h, w)
        tracks.append(F.grid_sample(mapping, grid.float(), mode="bilinear", align_corners=True) * 16)
    return torch.stack(tracks, 0), len(correlations)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="2B configs, 50 x 480 x 720, chunks of 13, layer 17")
    ap.add_argument("--frames", type=int, default=0)
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument("--width", type=int, default=0)
    ap.add_argument("--chunk-len", dest="chunk_len", type=int, default=0)
    ap.add_argument("--layer", type=int, default=-1)
    ap.add_argument("--grid", type=int, default=20)
    ap.add_argument("--decode", action="store_true", help="also run the reference's wasted VAE decode per chunk")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    args.frames = args.frames or (50 if args.full else 9)
    args.height = args.height or (480 if args.full else 64)
    args.width = args.width or (720 if args.full else 96)
    args.chunk_len = args.chunk_len or (13 if args.full else 5)
    args.layer = args.layer if args.layer >= 0 else (17 if args.full else 1)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    device = torch.device(args.device)

    transformer = CogVideoXTransformer3DModel(**({} if args.full else TINY_TRANSFORMER))
    vae = AutoencoderKLCogVideoX(**({} if args.full else TINY_VAE))
    randomize(transformer, 0)
    randomize(vae, 1)
    transformer.to(device, dtype).eval()
    vae.to(device, dtype).eval()
    if args.full:
        vae.enable_tiling()  # the reference tiles (240 x 360 pixel tiles)
    proc = CaptureQK()
    transformer.transformer_blocks[args.layer].attn1.set_processor(proc)
    scheduler = CogVideoXDDIMScheduler(timestep_spacing="trailing", snr_shift_scale=3.0, rescale_betas_zero_snr=True,
                                       prediction_type="v_prediction", beta_schedule="scaled_linear",
                                       beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(50)
    timestep = scheduler.timesteps[49].expand(2).to(device)
    cfg = transformer.config
    text = torch.zeros(2, cfg.max_text_seq_length, cfg.text_embed_dim, device=device, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (args.frames, args.height, args.width, 3), generator=g, dtype=torch.uint8)

    with torch.no_grad():
        for _ in range(args.warmup):
            track(video, vae, transformer, proc, text, timestep, args, device, dtype)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            _, chunks = track(video, vae, transformer, proc, text, timestep, args, device, dtype)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({
        "bench": "track", "impl": "difftrack-diffusers", "model": "random-2b" if args.full else "tiny",
        "video": [args.frames, args.height, args.width], "chunk_len": args.chunk_len, "chunks": chunks,
        "layer": args.layer, "queries": args.grid * args.grid, "latent": "sample", "vae_tiling": bool(args.full),
        "decode": args.decode, "dtype": args.dtype, "device": str(device), "iters": args.iters, "total_s": median,
        "min_s": times[0], "per_chunk_s": median / chunks,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
