// LayerNorm over the last dimension of short rows, the per-head query/key norm of CogVideoX's
// attention (diffusers Attention(qk_norm="layer_norm"): head_dim 64 values per row, one row per
// token and head). On CUDA it runs this project's warp-per-row kernels (models/cuda/) with their
// own backward; elsewhere, or for rows wider than 256, it is at::layer_norm.
#pragma once

#include <torch/torch.h>

namespace t4g {

// y = LayerNorm(x) * weight + bias over x's last dimension (weight, bias: [D], x's dtype), the
// same as at::layer_norm(x, {D}, weight, bias, eps) up to float32 rounding. Differentiable with
// respect to x, weight and bias; the weight and bias gradients are summed in a fixed order
// (deterministic run to run).
torch::Tensor head_layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps);

// Whether head_layer_norm would run the CUDA kernels for this input (tests and benchmarks).
bool head_layer_norm_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace t4g
