#!/usr/bin/env python3
"""Reference for bench/bench_sample.cpp: diffusers' CogVideoXPipeline.__call__ with the same models
(random weights, built from configs here), shapes, steps, CFG and scheduler, printing one JSON line
with the same keys (impl "diffusers").

    python bench/bench_sample_ref.py --preset 5b --full --steps 50 [--cag-layers 15,17,18]
Run both in the same job on the same GPU so that the figures are comparable.

Denoising is timed as pipe(..., output_type="latent"), per step through callback_on_step_end
(with a device synchronise, as the C++ side synchronises after every step); the decode as the
pipeline's own decode_latents + postprocess to uint8. diffusers has no CAG: with --cag-layers the
chosen blocks get an attention processor written here after research/methods.md 1.8's description
of DiffTrack's processor (batch [uncond; cond; perturbed]; for the perturbed element a full softmax
over all keys in chunks of 128 queries, cross-frame video probabilities zeroed without
renormalising, "drop"; or an additive -inf mask, "renorm").
"""
import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXPipeline,
                       CogVideoXTransformer3DModel)
from diffusers.models.embeddings import apply_rotary_emb

PRESETS = {
    "2b": dict(),  # diffusers' defaults are the 2B config
    "5b": dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
}
# The tiny form of the same preset (tools' model.tiny defaults: 2 blocks of 2 x 16, text 16 x 32).
TINY = dict(num_attention_heads=2, attention_head_dim=16, num_layers=2, text_embed_dim=32, time_embed_dim=32,
            in_channels=4, out_channels=4, max_text_seq_length=16, sample_height=8, sample_width=12,
            sample_frames=9)
TINY_VAE = dict(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                sample_height=64, sample_width=96, scaling_factor=1.0)
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


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


class CagProcessor:
    """CogVideoXAttnProcessor2_0 with the CAG perturbation on the last third of the batch."""

    def __init__(self, grid, mode):
        self.frames, self.tokens_per_frame = grid
        self.mode = mode

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        text_len = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        b = hidden_states.size(0)
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = k.shape[-1] // attn.heads
        q, k, v = (x.view(b, -1, attn.heads, head_dim).transpose(1, 2) for x in (q, k, v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        if image_rotary_emb is not None:
            q[:, :, text_len:] = apply_rotary_emb(q[:, :, text_len:], image_rotary_emb)
            k[:, :, text_len:] = apply_rotary_emb(k[:, :, text_len:], image_rotary_emb)
        n = b // 3
        out_plain = F.scaled_dot_product_attention(q[:2 * n], k[:2 * n], v[:2 * n])
        out_ptb = self.perturbed(q[2 * n:], k[2 * n:], v[2 * n:], text_len)
        out = torch.cat([out_plain, out_ptb]).transpose(1, 2).reshape(b, -1, attn.heads * head_dim)
        out = attn.to_out[1](attn.to_out[0](out))
        return out[:, text_len:], out[:, :text_len]

    def frame_ids(self, text_len, device):
        video = torch.arange(self.frames, device=device).repeat_interleave(self.tokens_per_frame)
        return torch.cat([torch.full((text_len,), -1, device=device), video])  # -1: text

    def perturbed(self, q, k, v, text_len):
        ids = self.frame_ids(text_len, q.device)
        allowed = (ids[:, None] == ids[None, :]) | (ids[:, None] < 0) | (ids[None, :] < 0)
        if self.mode == "renorm":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        scale = q.size(-1) ** -0.5
        out = []
        for start in range(0, q.size(2), 128):
            probs = torch.softmax(q[:, :, start:start + 128] @ k.transpose(-1, -2) * scale, dim=-1)
            out.append((probs * allowed[start:start + 128]) @ v)
        return torch.cat(out, dim=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="2b", choices=sorted(PRESETS))
    ap.add_argument("--full", action="store_true", help="released sizes, 49x480x720, bf16, cuda")
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=6.0)
    ap.add_argument("--dynamic-cfg", action="store_true")
    ap.add_argument("--cag-layers", default="")
    ap.add_argument("--cag-scale", type=float, default=1.0)
    ap.add_argument("--cag-mode", default="auto", choices=["auto", "drop", "renorm"],
                    help="auto: drop with CFG, renorm without, as DiffTrack's pipeline picks its processor")
    ap.add_argument("--frames", type=int, default=0)
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument("--width", type=int, default=0)
    ap.add_argument("--dtype", default="", choices=["", "bf16", "fp32"])
    ap.add_argument("--device", default="")
    ap.add_argument("--warmup-steps", type=int, default=1)
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = torch.device(args.device or ("cuda" if args.full else "cpu"))
    dtype_name = args.dtype or ("bf16" if args.full else "fp32")
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    frames = args.frames or (49 if args.full else 9)
    height = args.height or (480 if args.full else 64)
    width = args.width or (720 if args.full else 96)
    cag_layers = sorted(int(x) for x in args.cag_layers.split(",") if x)
    # DiffTrack's PAGMixin._set_pag_attn_processor: the CFG processor (drop) iff guidance_scale > 1.
    cag_mode = args.cag_mode if args.cag_mode != "auto" else ("drop" if args.cfg > 1 else "renorm")

    kwargs = dict(PRESETS[args.preset]) if args.full else dict(
        TINY, use_rotary_positional_embeddings=args.preset == "5b")
    if args.layers:
        kwargs["num_layers"] = args.layers
    torch.manual_seed(args.seed)
    with torch.device(device):
        transformer = CogVideoXTransformer3DModel(**kwargs).to(dtype)
        vae = (AutoencoderKLCogVideoX() if args.full else AutoencoderKLCogVideoX(**TINY_VAE)).to(dtype)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            p.normal_(0.0, 0.02)
            if p.dim() == 1 and name.endswith("weight"):
                p.add_(1.0)
    scheduler = (CogVideoXDPMScheduler(**SCHEDULER, snr_shift_scale=1.0) if args.preset == "5b"
                 else CogVideoXDDIMScheduler(**SCHEDULER, snr_shift_scale=3.0))
    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=vae.eval(), transformer=transformer.eval(),
                             scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    cfg = transformer.config
    g = torch.Generator().manual_seed(args.seed + 1)
    embeds = torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g).to(device, dtype)
    negative = torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g).to(device, dtype)

    if cag_layers:
        if args.dynamic_cfg or args.cfg <= 1:
            raise SystemExit("--cag-layers needs a static CFG scale > 1: the CAG fold below divides by it")
        # The pipeline batches [uncond; cond]; CAG needs [uncond; cond; perturbed] and its own
        # combination, so the transformer is wrapped: it sees 3 copies and returns the 2 the
        # pipeline expects, with the CAG term folded into the cond half.
        lat_f = (frames - 1) // 4 + 1
        grid = (lat_f, (height // 16) * (width // 16))
        for i in cag_layers:
            transformer.transformer_blocks[i].attn1.set_processor(CagProcessor(grid, cag_mode))
        original_forward = transformer.forward
        cag_scale = args.cag_scale
        guidance = args.cfg

        def forward_with_cag(hidden_states, encoder_hidden_states, timestep, **kw):
            n = hidden_states.size(0) // 2
            x = torch.cat([hidden_states, hidden_states[n:]])
            e = torch.cat([encoder_hidden_states, encoder_hidden_states[n:]])
            t = torch.cat([timestep, timestep[n:]])
            out = original_forward(x, e, t, **kw)[0]
            uncond, cond, ptb = out.chunk(3)
            # uncond + g (cond' - uncond) = uncond + g (cond - uncond) + s (cond - ptb)
            cond = cond + (cag_scale / guidance) * (cond - ptb)
            return (torch.cat([uncond, cond]),)

        transformer.forward = forward_with_cag

    step_times = []

    def on_step_end(_pipe, i, t, kw):
        sync(device)
        now = time.perf_counter()
        step_times.append(now - on_step_end.last)
        on_step_end.last = now
        return {}

    def denoise(steps):
        on_step_end.last = time.perf_counter()
        with torch.no_grad():
            return pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, num_frames=frames, height=height,
                        width=width, num_inference_steps=steps, guidance_scale=args.cfg,
                        use_dynamic_cfg=args.dynamic_cfg, generator=torch.Generator().manual_seed(args.seed),
                        output_type="latent", callback_on_step_end=on_step_end, return_dict=False)[0]

    def decode(latents):
        with torch.no_grad():
            video = pipe.decode_latents(latents)
            return pipe.video_processor.postprocess_video(video=video, output_type="pt").mul(255).round().to(
                torch.uint8).cpu()

    if args.warmup_steps > 0:
        latents = denoise(args.warmup_steps)
        if not args.no_decode:
            decode(latents)
        sync(device)
    step_times.clear()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    latents = denoise(args.steps)
    sync(device)
    denoise_s = time.perf_counter() - start
    peak_denoise = peak_bytes(device)
    decode_s, peak_decode = 0.0, None
    if not args.no_decode:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        decode(latents)
        sync(device)
        decode_s = time.perf_counter() - start
        peak_decode = peak_bytes(device) / 2**30

    steps = sorted(step_times)
    print(json.dumps({
        "bench": "sample", "impl": "diffusers", "preset": args.preset, "full": args.full,
        "layers": cfg.num_layers, "scheduler": type(scheduler).__name__, "frames": frames, "height": height,
        "width": width, "text": cfg.max_text_seq_length, "dtype": dtype_name, "device": device_name(device),
        "steps": args.steps, "cfg": args.cfg, "dynamic_cfg": args.dynamic_cfg, "cag_layers": cag_layers,
        "cag_scale": args.cag_scale if cag_layers else 0.0, "cag_mode": cag_mode if cag_layers else "none",
        "step_s_median": steps[len(steps) // 2], "step_s_min": steps[0], "step_s_first": step_times[0],
        "denoise_s": denoise_s, "decode_s": decode_s, "total_s": denoise_s + decode_s,
        "peak_gib_denoise": peak_denoise / 2**30, "peak_gib_decode": peak_decode,
    }), flush=True)


if __name__ == "__main__":
    main()
