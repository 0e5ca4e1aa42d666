// Launchers of the CUDA kernels behind models/head_layer_norm: a LayerNorm over short rows (the
// per-head query/key norm of CogVideoX: rows of head_dim = 64 values, 30-48 heads x 17,776
// tokens). Plain C++ declarations with untyped pointers, so that this header needs no CUDA or
// torch headers: head_layer_norm.cpp calls it with tensors' data pointers.
#pragma once

#include <cstdint>

namespace t4g::cuda {

enum class ElementType { kFloat32, kBFloat16, kFloat16 };

// The widest row the kernels take (one warp per row, up to 8 values per lane).
constexpr int kHeadNormMaxDim = 256;

// Blocks of the backward kernel: its per-block partial sums of the weight and bias gradients are
// [head_norm_backward_blocks(rows), d] float32, summed by the caller. Fixed by `rows` alone, so the
// summation order (and the result) does not depend on timing.
int64_t head_norm_backward_blocks(int64_t rows);

// Optional rotary embedding applied to the normalised rows (CogVideoX's 3D RoPE on the video
// tokens of q and k). Rows are [B, seq, heads] in that order; the first text_len tokens of each
// sample are left as they are, token text_len + t is rotated by table row t:
//   out[2i]     = y[2i] cos[t][2i]         - y[2i + 1] sin[t][2i]
//   out[2i + 1] = y[2i + 1] cos[t][2i + 1] + y[2i] sin[t][2i + 1]
// (diffusers' apply_rotary_emb with use_real_unbind_dim=-1). cos, sin: [seq - text_len, d] float32
// contiguous, every entry used as given. d must be even.
struct HeadRope {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t text_len = 0;
  int64_t seq = 0;
  int64_t heads = 0;
};

// Both launchers return nullptr on success, else the CUDA error's text (the caller throws). `rope`
// may be null (no rotation).

// y = (x - mean) * rstd * weight + bias per row of `d` values; mean and rstd ([rows] float32) are
// kept for the backward. x, y: [rows, d] contiguous; weight, bias: [d]; all of `type`.
const char* head_norm_forward(ElementType type, const void* x, const void* weight, const void* bias, void* y,
                              float* mean, float* rstd, int64_t rows, int d, float eps, const HeadRope* rope,
                              void* stream);

// dx from dy, and per-block partial sums of dweight = sum g * xhat and dbias = sum g, where g is
// dy rotated back (the transposed rotation) when `rope` is given, dy itself otherwise.
const char* head_norm_backward(ElementType type, const void* dy, const void* x, const void* weight, const float* mean,
                               const float* rstd, void* dx, float* dweight_partial, float* dbias_partial, int64_t rows,
                               int d, const HeadRope* rope, void* stream);

}  // namespace t4g::cuda
