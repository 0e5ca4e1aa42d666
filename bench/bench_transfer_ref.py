#!/usr/bin/env python3
"""Reference for bench/bench_transfer.cpp: the cost of DiTFlow's guided generation written with
diffusers' CogVideoXTransformer3DModel and scheduler (random weights, random reference latents),
following research/methods.md 3.2-3.3 as the authors' motion_guidance.py runs it: bf16 autocast,
a reference forward at t = 0 with the empty prompt; then, at each of the first `guidance_steps`
steps, `iterations` Adam iterations on fp32 latents, each a forward of the conditional branch that
stops after the AMF block (the later blocks and the output norms are bypassed), Q/K captured after
qk-norm and RoPE, per-head logits [heads, S, S] averaged over heads, softmax per target frame with
temperature 2, soft displacements, MSE on the entries where the reference's argmax displacement is
non-zero, backward through a GradScaler; then the CFG step as two batch-1 forwards (cond, uncond)
and the scheduler step. Prints one JSON line with bench_transfer's keys (impl "diffusers").

    python bench/bench_transfer_ref.py --preset 5b --full [--steps 50 --iterations 5] [--injection]
--injection adds the reference's default KV-injection forward per guided step (t4g does not
implement it; without the flag both sides do the same work). Run both in the same job on the
same GPU.
"""
import argparse
import json
import resource
import time
import types

import torch
import torch.nn.functional as F
from diffusers import (CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXPipeline,
                       CogVideoXTransformer3DModel)
from diffusers.models.embeddings import apply_rotary_emb

PRESETS = {"2b": dict(), "5b": dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True)}
TINY = dict(num_attention_heads=2, attention_head_dim=16, num_layers=2, text_embed_dim=32, time_embed_dim=32,
            in_channels=4, out_channels=4, max_text_seq_length=16, sample_height=8, sample_width=12, sample_frames=9)
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
                 clip_sample=False, steps_offset=0, timestep_spacing="trailing")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CaptureProcessor:
    """CogVideoX joint attention that keeps this block's Q/K (after qk-norm and RoPE)."""

    def __init__(self):
        self.query = self.key = None

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        text_len = encoder_hidden_states.size(1)
        x = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        b = x.size(0)
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        d = k.shape[-1] // attn.heads
        q, k, v = (t.view(b, -1, attn.heads, d).transpose(1, 2) for t in (q, k, v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        if image_rotary_emb is not None:
            q = torch.cat([q[:, :, :text_len], apply_rotary_emb(q[:, :, text_len:], image_rotary_emb)], dim=2)
            k = torch.cat([k[:, :, :text_len], apply_rotary_emb(k[:, :, text_len:], image_rotary_emb)], dim=2)
        self.query, self.key = q[-1:], k[-1:]
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, attn.heads * d)
        out = attn.to_out[1](attn.to_out[0](out))
        return out[:, text_len:], out[:, :text_len]


class Bypass(torch.nn.Module):
    """A block or norm that passes its input through (the blocks after the AMF block)."""

    def forward(self, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        return hidden_states if encoder_hidden_states is None else (hidden_states, encoder_hidden_states)


def motion_flow(q, k, frames, h, w, text_len, temp, argmax):
    """AMF of the captured Q/K as the reference computes it: [heads, S, S] logits, head mean."""
    q, k = q[0, :, text_len:], k[0, :, text_len:]
    logits = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).mean(0)  # [S, S]
    n = h * w
    probs = torch.softmax(logits.view(frames * n, frames, n) * temp, dim=-1)  # per target frame
    idx = torch.arange(n, device=q.device)
    pos = torch.stack([idx % w, idx // w], -1).to(probs.dtype)  # [n, 2] (x, y)
    src = pos.repeat(frames, 1)[:, None, :]  # [S, 1, 2]
    if argmax:
        disp = pos[probs.argmax(-1)] - src
    else:
        disp = probs @ pos - src
    return disp.view(frames, n, frames, 2).permute(0, 2, 1, 3).reshape(frames * frames, n, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="5b", choices=sorted(PRESETS))
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance-steps", type=int, default=-1)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--block", type=int, default=-1)
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--frames", type=int, default=0)
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument("--width", type=int, default=0)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--injection", action="store_true")
    ap.add_argument("--device", default="")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = torch.device(args.device or ("cuda" if args.full else "cpu"))
    dtype = torch.bfloat16 if args.full else torch.float32
    frames = args.frames or (21 if args.full else 9)
    height = args.height or (480 if args.full else 64)
    width = args.width or (720 if args.full else 96)
    kwargs = dict(PRESETS[args.preset]) if args.full else dict(TINY, use_rotary_positional_embeddings=args.preset == "5b")
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = CogVideoXTransformer3DModel(**kwargs).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.02)
            if p.dim() == 1 and name.endswith("weight"):
                p.add_(1.0)
    model.requires_grad_(False).eval()
    if args.checkpointing:
        model.enable_gradient_checkpointing()
    cfg = model.config
    block = args.block if args.block >= 0 else (20 if args.preset == "5b" and cfg.num_layers == 42 else cfg.num_layers // 2)
    guided = args.guidance_steps if args.guidance_steps >= 0 else max(1, round(0.2 * args.steps))
    capture = CaptureProcessor()
    model.transformer_blocks[block].attn1.set_processor(capture)
    blocks, norms = list(model.transformer_blocks), (model.norm_final, model.norm_out)

    def truncated(on):
        if on:
            for i in range(block + 1, len(blocks)):
                model.transformer_blocks[i] = Bypass()
            model.norm_final, model.norm_out = Bypass(), Bypass()
        else:
            for i in range(block + 1, len(blocks)):
                model.transformer_blocks[i] = blocks[i]
            model.norm_final, model.norm_out = norms

    if args.preset == "5b":
        scheduler = CogVideoXDPMScheduler(**SCHEDULER, snr_shift_scale=1.0)
    else:
        scheduler = CogVideoXDDIMScheduler(**SCHEDULER, snr_shift_scale=3.0)
    scheduler.set_timesteps(args.steps, device=device)
    lat_f, lat_h, lat_w = (frames - 1) // 4 + 1, height // 8, width // 8
    p = cfg.patch_size
    grid_h, grid_w = lat_h // p, lat_w // p
    rope = None
    if cfg.use_rotary_positional_embeddings:
        # The pipeline's own table builder, called on a stand-in holding what it reads.
        holder = types.SimpleNamespace(transformer=model, vae_scale_factor_spatial=8)
        rope = CogVideoXPipeline._prepare_rotary_positional_embeddings(holder, height, width, lat_f, device)

    g = torch.Generator().manual_seed(args.seed + 1)
    text = lambda: torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g).to(device, dtype)
    cond, uncond, empty = text(), text(), text()
    reference = torch.randn(1, lat_f, cfg.in_channels, lat_h, lat_w, generator=g).to(device, dtype)
    lrs = torch.linspace(2e-3, 1e-3, guided + 1).tolist()
    autocast = torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)

    def forward(x, e, t):
        return model(hidden_states=x, encoder_hidden_states=e, timestep=t.expand(x.shape[0]),
                     image_rotary_emb=rope, return_dict=False)[0]

    def generate(steps, n_guided, iterations):
        with torch.no_grad(), autocast:
            truncated(True)
            forward(reference, empty, torch.tensor([0], device=device))
            truncated(False)
            ref_flow = motion_flow(capture.query.float(), capture.key.float(), lat_f, grid_h, grid_w,
                                   cfg.max_text_seq_length, 2.0, True)
        moving = ref_flow.norm(dim=-1) > 0
        latents = torch.randn(1, lat_f, cfg.in_channels, lat_h, lat_w, generator=torch.Generator().manual_seed(
            args.seed)).to(device, dtype)
        scheduler.set_timesteps(steps, device=device)
        old, guidance_s, step_times = None, 0.0, []
        for i, t in enumerate(scheduler.timesteps):
            start = time.perf_counter()
            if i < n_guided:
                if args.injection:
                    with torch.no_grad(), autocast:
                        forward(scheduler.add_noise(reference, latents, t[None]), cond, t)
                x = latents.detach().float().requires_grad_(True)
                opt = torch.optim.Adam([x], lr=lrs[i])
                scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
                truncated(True)
                for _ in range(iterations):
                    opt.zero_grad()
                    with torch.enable_grad(), autocast:
                        forward(x, cond, t)
                        flow = motion_flow(capture.query, capture.key, lat_f, grid_h, grid_w,
                                           cfg.max_text_seq_length, 2.0, False)
                        loss = F.mse_loss(flow.float()[moving], ref_flow[moving])
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                truncated(False)
                latents = x.detach()
                sync(device)
                guidance_s += time.perf_counter() - start
            with torch.no_grad(), autocast:
                v_cond = forward(latents, cond, t).float()
                v_uncond = forward(latents, uncond, t).float()
            w = args.cfg
            if args.preset == "5b":
                w = 1 + args.cfg * (1 - torch.cos(torch.tensor(torch.pi * ((args.steps - t.item()) / args.steps) ** 5.0)).item()) / 2
            v = v_uncond + w * (v_cond - v_uncond)
            if isinstance(scheduler, CogVideoXDPMScheduler):
                prev = scheduler.timesteps[i - 1] if i > 0 else None
                latents, old = scheduler.step(v, old, t, prev, latents, return_dict=False)
            else:
                latents = scheduler.step(v, t, latents, return_dict=False)[0]
            latents = latents.to(dtype)
            sync(device)
            step_times.append(time.perf_counter() - start)
        return guidance_s, step_times

    generate(1, 1, 1)  # warm-up
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    guidance_s, step_times = generate(args.steps, guided, args.iterations)
    sync(device)
    total_s = time.perf_counter() - start
    plain = step_times[guided:]
    print(json.dumps({
        "bench": "transfer", "impl": "diffusers", "preset": args.preset, "full": args.full, "target": "latents",
        "blocks": [block], "frames": frames, "latent_frames": lat_f, "height": height, "width": width,
        "dtype": "bf16" if args.full else "fp32",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "checkpointing": args.checkpointing, "injection": args.injection, "steps": args.steps,
        "guidance_steps": guided, "iterations": args.iterations, "total_s": total_s, "guidance_s": guidance_s,
        "iteration_s": guidance_s / max(1, guided * args.iterations), "guided_steps_s": sum(step_times[:guided]),
        "plain_step_s": sum(plain) / len(plain) if plain else 0.0, "peak_gib": peak_bytes(device) / 2**30,
    }), flush=True)


if __name__ == "__main__":
    main()
