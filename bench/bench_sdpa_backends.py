"""SDPA kernel choice at CogVideoX's attention shapes (issue 3: where the transformer's time goes).

Times torch's scaled_dot_product_attention with each CUDA backend (flash = FlashAttention-2,
cudnn = cuDNN's fused attention, efficient = xformers-style) forward and forward+backward on
[B, heads, 226 + 13*1350, 64] bf16, and reports which backend torch picks by default. One JSON
line per (shape, backend, mode). With --layouts, times the default backend instead on the memory
layouts q, k and v can arrive in (the attention's own layout choice):
  bshd      all three transposed views of [B, S, heads, 64] (the layout a Linear's output gives)
  bhsd      all three contiguous [B, heads, S, 64]
  diffusers q and k contiguous [B, heads, S, 64] (diffusers' LayerNorm output), v a view of [B, S, heads, 64]
  packed    views of one [B, S, 3, heads, 64] tensor (a fused QKV projection)
The output gradient is always a transposed view of [B, S, heads, 64], as the output projection
gives it back. Usage: python3 bench/bench_sdpa_backends.py [--iters 10] [--layouts]
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    times.sort()
    return times[len(times) // 2]


def make_qkv(layout, batch, seq, heads):
    def rnd(*shape):
        return torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
    if layout == "bshd":
        qkv = [rnd(batch, seq, heads, 64).transpose(1, 2) for _ in range(3)]
    elif layout == "bhsd":
        qkv = [rnd(batch, heads, seq, 64) for _ in range(3)]
    elif layout == "diffusers":
        qkv = [rnd(batch, heads, seq, 64), rnd(batch, heads, seq, 64), rnd(batch, seq, heads, 64).transpose(1, 2)]
    elif layout == "packed":
        packed = rnd(batch, seq, 3, heads, 64)
        qkv = [packed[:, :, i].transpose(1, 2) for i in range(3)]
    else:
        raise ValueError(layout)
    return [t.detach().requires_grad_() for t in qkv]


def layouts(iters):
    seq = 226 + 13 * 1350
    for name, batch, heads in [("2b", 1, 30), ("5b", 1, 48)]:
        flop_fwd = 4.0 * batch * heads * seq * seq * 64
        for layout in ["bshd", "bhsd", "diffusers", "packed"]:
            q, k, v = make_qkv(layout, batch, seq, heads)
            grad = torch.randn(batch, seq, heads, 64, device="cuda", dtype=torch.bfloat16).transpose(1, 2)

            def fwd():
                with torch.no_grad():
                    return F.scaled_dot_product_attention(q, k, v)

            def fwd_bwd():
                F.scaled_dot_product_attention(q, k, v).backward(grad)

            t_f = timed(fwd, iters)
            t_fb = timed(fwd_bwd, iters)
            out = fwd()
            print(json.dumps({"bench": "sdpa_layout", "shape": name, "layout": layout, "forward_ms": t_f * 1e3,
                              "fwd_bwd_ms": t_fb * 1e3, "forward_tflops": flop_fwd / t_f / 1e12,
                              "fwd_bwd_tflops": 3.5 * flop_fwd / t_fb / 1e12, "out_strides": list(out.stride()),
                              "dq_strides": list(q.grad.stride())}), flush=True)
            del q, k, v, grad, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--layouts", action="store_true")
    args = parser.parse_args()
    if args.layouts:
        return layouts(args.iters)
    seq = 226 + 13 * 1350
    shapes = [("2b", 1, 30), ("2b_cfg", 2, 30), ("5b", 1, 48)]
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "default": None}
    print(json.dumps({"bench": "sdpa_backends", "priority_order": str(torch._C._get_sdp_priority_order())
                      if hasattr(torch._C, "_get_sdp_priority_order") else "n/a",
                      "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "cudnn": torch.backends.cudnn.version()}), flush=True)
    for name, batch, heads in shapes:
        q, k, v = (torch.randn(batch, seq, heads, 64, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
                   .requires_grad_() for _ in range(3))
        grad = torch.randn(batch, heads, seq, 64, device="cuda", dtype=torch.bfloat16)
        flop_fwd = 4.0 * batch * heads * seq * seq * 64
        ref = None
        for backend, choice in backends.items():
            def fwd():
                with torch.no_grad():
                    return F.scaled_dot_product_attention(q, k, v)

            def fwd_bwd():
                out = F.scaled_dot_product_attention(q, k, v)
                out.backward(grad)

            try:
                if choice is not None:
                    with sdpa_kernel([choice]):
                        t_f = timed(fwd, args.iters)
                        t_fb = timed(fwd_bwd, args.iters)
                        out = fwd().float()
                else:
                    t_f = timed(fwd, args.iters)
                    t_fb = timed(fwd_bwd, args.iters)
                    out = fwd().float()
                if ref is None:
                    ref = out
                err = (out - ref).abs().max().item()
                print(json.dumps({"bench": "sdpa", "shape": name, "batch": batch, "heads": heads, "seq": seq,
                                  "backend": backend, "forward_ms": t_f * 1e3, "fwd_bwd_ms": t_fb * 1e3,
                                  "forward_tflops": flop_fwd / t_f / 1e12,
                                  "fwd_bwd_tflops": 3.5 * flop_fwd / t_fb / 1e12,
                                  "max_abs_diff_vs_flash": err}), flush=True)
            except RuntimeError as e:
                print(json.dumps({"bench": "sdpa", "shape": name, "backend": backend, "error": str(e)[:200]}),
                      flush=True)
        del q, k, v, grad


if __name__ == "__main__":
    main()
