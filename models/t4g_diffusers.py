#!/usr/bin/env python3
"""A t4g-trained model in diffusers: the backbone as diffusers loads it, plus the Track4Gen refiner.

t4g writes this file into every export (RUN/export/t4g_diffusers.py). A run fine-tunes the
backbone together with a refiner whose zero-initialised projection adds a residual into the
video tokens after one transformer block; the trained blocks have adapted to that residual, so
the model the run trained is "backbone + residual", and a plain `CogVideoXPipeline` would sample
from another network. This file rebuilds the whole model:

    import sys; sys.path.insert(0, "RUN/export")
    from t4g_diffusers import load_pipeline
    pipe = load_pipeline("RUN/export", torch_dtype=torch.bfloat16).to("cuda")
    video = pipe(prompt="a cat", num_inference_steps=50).frames[0]

What `load_pipeline` does, from RUN/export/t4g_model.json:
  - the base pipeline: the export itself when it is a whole pipeline (t4g's tiny models), else the
    folder the run started from (`base_model`, or `base=` to override it);
  - the backbone: `transformer/` of the export when the run trained blocks or the whole model;
    LoRA adapters from `lora/` (diffusers' `load_lora_weights`, needs peft) when it trained those;
  - the refiner from `refiner.safetensors` (its shape is in the file's metadata), cast to the
    transformer's dtype, hooked after its block: hidden += proj(refiner(hidden)), exactly as
    t4g's forward applies it (models/refiner.h, models/trained_model.h).

Run as a script it samples one video (the parity check against `t4g sample --save-latents`):
    python t4g_diffusers.py RUN/export --out latents.safetensors [--prompt-embeds E.safetensors]
        [--steps 50] [--cfg 6] [--seed 42] [--frames F --height H --width W] [--device cuda]
Tested against t4g with diffusers 0.42.1 (tests/fixtures/trained_export).
"""
import argparse
import json
import os

import torch
from torch import nn

MANIFEST = "t4g_model.json"


class Refiner(nn.Module):
    """models/refiner.h: convolutions joined by PReLUs on the video tokens of one block, and the
    projection back to tokens. Parameter names are those of refiner.safetensors."""

    def __init__(self, block, layers, conv, kernel, channels):
        super().__init__()
        self.block, self.three_d, self.channels = block, conv == "3d", channels
        conv_cls = nn.Conv3d if self.three_d else nn.Conv2d
        self.convs = nn.ModuleList([conv_cls(channels, channels, kernel, padding=kernel // 2) for _ in range(layers)])
        self.activations = nn.ModuleList([nn.PReLU(channels) for _ in range(layers - 1)])
        self.proj = nn.Linear(channels, channels)

    def refine(self, video_tokens, frames, height, width):
        """[B, F*h*w, C] tokens (frame, row, col order) -> the refined map [B*F, C, h, w]."""
        b, c = video_tokens.shape[0], self.channels
        x = video_tokens.to(self.proj.weight.dtype).view(b, frames, height, width, c)
        if self.three_d:
            x = x.permute(0, 4, 1, 2, 3).contiguous()
        else:
            x = x.permute(0, 1, 4, 2, 3).reshape(b * frames, c, height, width).contiguous()
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i + 1 < len(self.convs):
                x = self.activations[i](x)
        if self.three_d:
            x = x.permute(0, 2, 1, 3, 4).reshape(b * frames, c, height, width)
        return x

    def residual(self, video_tokens, frames, height, width):
        """What the block's output gets added: proj(refined map) as tokens [B, F*h*w, C]."""
        b, c = video_tokens.shape[0], self.channels
        refined = self.refine(video_tokens, frames, height, width)
        tokens = refined.view(b, frames, c, height, width).permute(0, 1, 3, 4, 2).reshape(b, -1, c)
        return self.proj(tokens)


def load_refiner(path):
    """refiner.safetensors -> Refiner (float32, eval mode), shaped by the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["t4g_refiner"])
    refiner = Refiner(meta["block"], meta["layers"], meta["conv"], meta["kernel"], meta["channels"])
    refiner.load_state_dict(load_file(path), strict=True)
    return refiner.eval()


def attach_refiner(transformer, refiner):
    """Hooks `refiner` into a diffusers CogVideoXTransformer3DModel: after block `refiner.block`
    the video hidden states get refiner.residual(...) added. Returns the two hook handles."""
    grid = {}
    patch, patch_t = transformer.config.patch_size, transformer.config.patch_size_t

    def remember_grid(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        _, frames, _, height, width = hidden.shape
        grid["fhw"] = (frames // patch_t if patch_t else frames, height // patch, width // patch)

    def add_residual(module, args, output):
        hidden, encoder = output
        frames, height, width = grid["fhw"]
        return hidden + refiner.residual(hidden, frames, height, width).to(hidden.dtype), encoder

    refiner.to(device=transformer.device, dtype=transformer.dtype)
    return (transformer.register_forward_pre_hook(remember_grid, with_kwargs=True),
            transformer.transformer_blocks[refiner.block].register_forward_hook(add_residual))


def load_pipeline(export_dir, base=None, torch_dtype=None):
    """The trained model of `export_dir` as a diffusers pipeline (see the module docstring)."""
    from diffusers import CogVideoXTransformer3DModel, DiffusionPipeline

    with open(os.path.join(export_dir, MANIFEST)) as f:
        manifest = json.load(f)
    base_dir = base or manifest["base_model"] or export_dir
    if base_dir.startswith("preset:"):
        raise ValueError(f"{export_dir} was trained from random {base_dir} weights that only t4g rebuilds")
    dtype = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    kwargs = dict(dtype)
    if manifest["transformer"]:
        kwargs["transformer"] = CogVideoXTransformer3DModel.from_pretrained(
            os.path.join(export_dir, manifest["transformer"]), **dtype)
    with open(os.path.join(base_dir, "model_index.json")) as f:
        index = json.load(f)
    for name, entry in index.items():  # components saved as None (t4g's tiny models have no T5)
        if isinstance(entry, list) and entry == [None, None]:
            kwargs[name] = None
    pipe = DiffusionPipeline.from_pretrained(base_dir, **kwargs)
    if manifest["lora"]:
        pipe.load_lora_weights(os.path.join(export_dir, manifest["lora"]), weight_name="pytorch_lora_weights.safetensors")
    if manifest["refiner"]:
        pipe.t4g_refiner = load_refiner(os.path.join(export_dir, manifest["refiner"]))
        pipe.t4g_refiner_hooks = attach_refiner(pipe.transformer, pipe.t4g_refiner)
    return pipe


def main():
    from safetensors.torch import load_file, save_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export")
    parser.add_argument("--out", required=True, help="safetensors with `latents` (and `video` unless --latents-only)")
    parser.add_argument("--prompt-embeds", help="prompt_embeds / negative_prompt_embeds; default: zeros (tiny models)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-refiner", action="store_true", help="the backbone alone (what a plain pipeline gives)")
    args = parser.parse_args()

    pipe = load_pipeline(args.export, torch_dtype=torch.float32)
    if args.no_refiner and hasattr(pipe, "t4g_refiner_hooks"):
        for handle in pipe.t4g_refiner_hooks:
            handle.remove()
    pipe.to(args.device)
    config = pipe.transformer.config
    if args.prompt_embeds:
        embeds = load_file(args.prompt_embeds)
        positive, negative = embeds["prompt_embeds"], embeds.get("negative_prompt_embeds")
    else:
        positive = torch.zeros(1, config.max_text_seq_length, config.text_embed_dim)
        negative = torch.zeros_like(positive)
    common = dict(prompt_embeds=positive.to(args.device), negative_prompt_embeds=None if negative is None else negative.to(args.device),
                  num_inference_steps=args.steps, guidance_scale=args.cfg, num_frames=args.frames, height=args.height,
                  width=args.width, generator=torch.Generator().manual_seed(args.seed))
    latents = pipe(output_type="latent", **common).frames
    tensors = {"latents": latents.float().cpu().contiguous()}
    video = pipe(output_type="pt", **common).frames  # [B, F, 3, H, W] in [0, 1]
    tensors["video"] = video.float().cpu().contiguous()
    save_file(tensors, args.out)


if __name__ == "__main__":
    main()
