"""Device time per kernel category for the Python references, the same categories as
bench/kernel_profile.h (keep the two kernel_category functions in sync), so that a C++ benchmark's
profile and its reference's can be compared row by row."""
import torch
from torch.profiler import ProfilerActivity, profile


def kernel_category(raw):
    n = raw.lower()
    has = lambda *subs: any(s in n for s in subs)
    if has("flash", "fmha", "sdpa", "attention", "attn"):
        return "attention"
    if has("gemm", "xmma", "cutlass", "nvjet", "matmul", "cublas"):
        return "gemm"
    if has("conv", "implicit_convolve", "winograd", "cudnn"):
        return "conv"
    if has("layer_norm", "layernorm", "group_norm", "groupnorm", "rms"):
        return "norm"
    if has("nccl"):
        return "nccl"
    if has("memcpy", "memset", "copy", "cat", "index", "gather", "scatter"):
        return "copy"
    if has("reduce", "softmax", "norm"):
        return "reduce"
    if has("elementwise", "vectorized", "unrolled", "gelu", "silu", "mul", "add"):
        return "elementwise"
    return "other"


def profile_kernels(fn, iters, top=15):
    """Runs fn iters times under the profiler; returns the JSON-able profile per call of fn."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    by_name = {}
    for e in prof.profiler.kineto_results.events():
        if e.device_type() != torch.autograd.DeviceType.CUDA:
            continue
        calls, ns = by_name.get(e.name(), (0, 0))
        by_name[e.name()] = (calls + 1, ns + e.duration_ns())
    total = sum(ns for _, ns in by_name.values()) / 1e6 / iters
    cats = {}
    for name, (calls, ns) in by_name.items():
        c = cats.setdefault(kernel_category(name), {"ms": 0.0, "calls": 0})
        c["ms"] += ns / 1e6 / iters
        c["calls"] += calls // iters
    for c in cats.values():
        c["share"] = c["ms"] / total if total else 0.0
    kernels = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]
    return {"device_ms": total, "categories": cats,
            "top_kernels": [{"name": n[:120], "calls": c // iters, "ms": ns / 1e6 / iters,
                             "category": kernel_category(n)} for n, (c, ns) in kernels]}
