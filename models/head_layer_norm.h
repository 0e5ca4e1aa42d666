// LayerNorm over the last dimension of short rows, the per-head query/key norm of CogVideoX's
// attention (diffusers Attention(qk_norm="layer_norm"): head_dim 64 values per row, one row per
// token and head), optionally followed by the 5B model's RoPE on the video tokens. On CUDA it runs
// this project's warp-per-row kernels (models/cuda/) with their own backward, the rotation done in
// registers before the row is stored; elsewhere, or for rows wider than 256, or RoPE tables that
// require grad (DiTFlow), it is at::layer_norm followed by apply_rotary_emb_joint.
#pragma once

#include <torch/torch.h>

#include "models/embeddings.h"

namespace t4g {

// y = LayerNorm(x) * weight + bias over x's last dimension (weight, bias: [D], x's dtype), the
// same as at::layer_norm(x, {D}, weight, bias, eps) up to float32 rounding. Differentiable with
// respect to x, weight and bias; the weight and bias gradients are summed in a fixed order
// (deterministic run to run).
torch::Tensor head_layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps);

// head_layer_norm over x = [B, S, heads, head_dim], then apply_rotary_emb_joint(y, rope, text_len):
// the first text_len tokens stay as normalised, the others are rotated by the tables' rows. The
// fused kernel rounds once (diffusers rounds the norm's output to x's dtype before rotating, so in
// bf16 the two differ by at most about one bf16 step); the tables get no gradient from it.
torch::Tensor head_layer_norm_rope(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                   double eps, const RotaryEmbedding& rope, int64_t text_len);

// Whether head_layer_norm would run the CUDA kernels for this input (tests and benchmarks).
bool head_layer_norm_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// Whether head_layer_norm_rope would run the fused CUDA kernels (tests and benchmarks).
bool head_layer_norm_rope_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                      const RotaryEmbedding& rope, int64_t text_len);

}  // namespace t4g
